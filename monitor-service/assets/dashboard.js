// The monitor's dashboard, in the browser: listens to /monitor/stream (server-sent events),
// keeps at most the last hour of pings per target in fixed-size ring buffers (typed arrays,
// allocated once: memory does not grow however long the page stays open), and redraws the
// state cards, the latency chart (a <canvas>), the workers and the state changes.
//
// Events: `snapshot` (on every (re)connection: settings, summaries, workers, the last hour of
// points, recent changes), `ping`, `cambio`, `estado` (every second), `perdidos`.
// Stable hooks for tests: [data-servicio][data-estado] on each target's card (and its
// [data-rol="diagnostico"] line), #grafico's data-puntos, #conexion's data-conectado, body's
// data-listo, on each worker's row data-worker, data-vivo, data-control and data-consume
// ("si", "no", or "" when unknown), and on each change of #cambios data-de and data-a.
"use strict";

(() => {
  const HORA_MS = 3600 * 1000;
  const CODIGOS = ["ok", "fallo", "timeout"];
  const COLORES_SERIE = ["#38bdf8", "#e879f9", "#34d399", "#fbbf24", "#f472b6"];
  const COLOR = {
    OK: "#22c55e", DEGRADADO: "#f59e0b", CAIDO: "#ef4444", INICIANDO: "#94a3b8",
    ejes: "#93a0b8", rejilla: "rgba(147,160,184,0.12)", texto: "#c8d0dd",
    asr: "#a78bfa", fallo: "#ef4444",
  };
  const CAMBIOS_MAX = 100;
  // From best to worst, as the server ranks them: the page's title shows the worst.
  const GRAVEDAD = { OK: 0, INICIANDO: 1, DEGRADADO: 2, CAIDO: 3 };

  // ---- State -------------------------------------------------------------------------------

  const st = {
    ajustes: null,
    desfase: 0,              // Date.now() minus the server's clock: times are the server's
    series: new Map(),       // servicio -> Anillo
    objetivos: [],           // the server's summaries
    workers: [],
    cambios: [],             // oldest first, at most CAMBIOS_MAX
    ventana: 60,             // seconds
    pausado: false,
    finPausa: 0,             // server time the chart froze at
    conectado: false,
    tarjetas: new Map(),     // servicio -> card elements
  };

  const ahora = () => Date.now() - st.desfase;

  /** A fixed-capacity ring of points: when full, the oldest is overwritten. */
  class Anillo {
    constructor(capacidad) {
      this.cap = Math.max(1, capacidad | 0);
      this.t = new Float64Array(this.cap);
      this.ms = new Float64Array(this.cap);
      this.r = new Uint8Array(this.cap);
      this.inicio = 0;
      this.n = 0;
    }
    meter(t, ms, r) {
      let i;
      if (this.n < this.cap) {
        i = (this.inicio + this.n) % this.cap;
        this.n++;
      } else {
        i = this.inicio;
        this.inicio = (this.inicio + 1) % this.cap;
      }
      this.t[i] = t; this.ms[i] = ms; this.r[i] = r;
    }
    /** Drops points older than `limite` from the front (points arrive nearly in order). */
    recortar(limite) {
      while (this.n > 0 && this.t[this.inicio] < limite) {
        this.inicio = (this.inicio + 1) % this.cap;
        this.n--;
      }
    }
    recorrer(fn) {
      for (let k = 0, i = this.inicio; k < this.n; k++, i = (i + 1) % this.cap) {
        fn(this.t[i], this.ms[i], this.r[i]);
      }
    }
  }

  function capacidad() {
    const a = st.ajustes;
    return a ? a.puntos_max : 14400;
  }

  function serie(servicio) {
    let s = st.series.get(servicio);
    if (!s) {
      s = new Anillo(capacidad());
      st.series.set(servicio, s);
    }
    return s;
  }

  // ---- Formatting ---------------------------------------------------------------------------

  const NBSP = "\u00a0"; // between a number and its unit, so they never wrap apart

  function fmtMs(v) {
    if (v == null || !isFinite(v)) return "—";
    if (v >= 1000) return (Number.isInteger(v / 1000) ? v / 1000 : (v / 1000).toFixed(2)) + NBSP + "s";
    if (v >= 100) return v.toFixed(0) + NBSP + "ms";
    if (v >= 10) return v.toFixed(1) + NBSP + "ms";
    return v.toFixed(2) + NBSP + "ms";
  }

  function fmtDuracion(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    const h = Math.floor(m / 60);
    if (h < 24) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function fmtHace(ms) {
    if (ms < 1000) return "hace " + (Math.max(0, ms) / 1000).toFixed(1) + " s";
    return "hace " + fmtDuracion(ms);
  }

  function dos(n) { return n < 10 ? "0" + n : String(n); }

  /** A server timestamp as the time of day, so it matches the monitor's log lines. */
  function fmtHora(t, conSegundos = true, conMs = false) {
    const d = new Date(t);
    let s = dos(d.getHours()) + ":" + dos(d.getMinutes());
    if (conSegundos) s += ":" + dos(d.getSeconds());
    if (conMs) s += "." + String(d.getMilliseconds()).padStart(3, "0");
    return s;
  }

  function fmtPct(v) {
    return v == null || !isFinite(v) ? "—" : v.toFixed(2) + NBSP + "%";
  }

  function el(tag, clase, texto) {
    const e = document.createElement(tag);
    if (clase) e.className = clase;
    if (texto != null) e.textContent = texto;
    return e;
  }

  // ---- Events from the server -----------------------------------------------------------

  function aplicarEstado(d) {
    st.desfase = Date.now() - d.ahora;
    st.objetivos = d.objetivos || [];
    st.workers = d.workers || [];
    for (const o of st.objetivos) serie(o.servicio);
    pintarTarjetas();
    pintarWorkers();
  }

  function aplicarSnapshot(d) {
    st.ajustes = d.ajustes;
    st.series = new Map();
    for (const s of d.series || []) {
      const anillo = serie(s.servicio);
      for (const p of s.puntos) anillo.meter(p[0], p[1], p[2]);
    }
    st.cambios = (d.cambios || []).slice(-CAMBIOS_MAX);
    aplicarEstado(d);
    const a = st.ajustes;
    const nombres = st.objetivos.map(o => o.servicio).join(", ");
    document.getElementById("subtitulo").textContent =
      `${nombres} · un ping cada ${a.intervalo_ms} ms · timeout ${a.timeout_ms} ms · ` +
      `DEGRADADO si la mediana de ${a.ventana_degradado} pings supera ${a.umbral_degradado_ms} ms`;
    document.getElementById("leyenda-umbral").textContent = `Umbral DEGRADADO ${fmtMs(a.umbral_degradado_ms)}`;
    document.getElementById("leyenda-timeout").textContent = `Timeout del ping ${fmtMs(a.timeout_ms)}`;
    document.getElementById("leyenda-asr").textContent = `ASR detección ${fmtMs(a.asr_ms)}`;
    pintarCambios();
    calcularCifras();
    document.body.dataset.listo = "si";
    pedirDibujo();
  }

  function aplicarPing(p) {
    serie(p.servicio).meter(p.t, p.latencia_ms, Math.max(0, CODIGOS.indexOf(p.resultado)));
    pedirDibujo();
  }

  function aplicarCambio(c) {
    st.cambios.push(c);
    if (st.cambios.length > CAMBIOS_MAX) st.cambios.splice(0, st.cambios.length - CAMBIOS_MAX);
    // The card changes at once, not at the next `estado`.
    const o = st.objetivos.find(x => x.servicio === c.servicio);
    if (o) {
      o.estado = c.a;
      o.estado_desde = c.en;
    }
    pintarTarjetas();
    pintarCambios();
    pedirDibujo();
  }

  function marcarConexion(si, texto) {
    st.conectado = si;
    const c = document.getElementById("conexion");
    c.dataset.conectado = si ? "si" : "no";
    document.body.dataset.conectado = si ? "si" : "no";
    document.getElementById("conexion-texto").textContent = texto;
  }

  let fuente = null;
  function conectar() {
    if (fuente) fuente.close();
    const es = new EventSource("/monitor/stream");
    fuente = es;
    const json = fn => e => {
      try { fn(JSON.parse(e.data)); } catch (err) { console.error("evento no válido", e.type, err); }
    };
    es.addEventListener("snapshot", json(d => { aplicarSnapshot(d); marcarConexion(true, "En vivo"); }));
    es.addEventListener("estado", json(aplicarEstado));
    es.addEventListener("ping", json(aplicarPing));
    es.addEventListener("cambio", json(aplicarCambio));
    es.addEventListener("perdidos", json(d => console.warn(`se perdieron ${d.eventos} eventos (conexión lenta)`)));
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (e.g. 503, too many pages open): the browser will not retry by itself.
        marcarConexion(false, "Sin conexión, reintentando…");
        setTimeout(conectar, 5000);
      } else {
        marcarConexion(false, "Reconectando…");
      }
    };
  }

  // ---- Target cards ---------------------------------------------------------------------

  function tarjeta(o) {
    let t = st.tarjetas.get(o.servicio);
    if (t) return t;
    const cont = document.getElementById("objetivos");
    const vacio = cont.querySelector(".vacio");
    if (vacio) vacio.remove();

    const art = el("article", "objetivo");
    art.dataset.servicio = o.servicio;
    art.setAttribute("aria-label", "Estado de " + o.servicio);

    const nombre = el("div", "nombre");
    const h = el("h3", null, o.servicio);
    const ruta = el("span", "ruta", `${o.cola} · ${o.tarea}`);
    const insignia = el("span", "insignia");
    insignia.dataset.rol = "estado";
    const desde = el("span", "desde");
    nombre.append(h, ruta, insignia, desde);

    const cifra = (titulo) => {
      const dl = el("dl", "cifra");
      const dt = el("dt", null, titulo);
      const dd = el("dd", null, "—");
      const det = el("span", "detalle");
      dl.append(dt, dd, det);
      return { dl, dd, det };
    };
    const lat = cifra("Latencia");
    const disp = cifra("Disponibilidad");
    const barra = el("div", "barra-disp");
    const relleno = el("span");
    barra.append(relleno);
    disp.dl.append(barra);
    const pings = cifra("Pings");

    // Why the task pings fail, as remote control tells it (only while CAIDO).
    const diagnostico = el("p", "diagnostico");
    diagnostico.dataset.rol = "diagnostico";
    diagnostico.setAttribute("role", "status");
    diagnostico.hidden = true;

    art.append(nombre, lat.dl, disp.dl, pings.dl, diagnostico);
    cont.append(art);
    t = { art, insignia, desde, lat, disp, barra, relleno, pings, diagnostico };
    st.tarjetas.set(o.servicio, t);
    return t;
  }

  function pintarTarjetas() {
    let peor = "OK";
    for (const o of st.objetivos) {
      const t = tarjeta(o);
      if (t.art.dataset.estado !== o.estado) {
        t.art.dataset.estado = o.estado;
        t.insignia.textContent = o.estado;
      }
      if ((GRAVEDAD[o.estado] ?? 0) > GRAVEDAD[peor]) peor = o.estado;
      const p = o.pings || {};
      t.pings.dd.textContent = (p.enviados ?? 0).toLocaleString("es-ES");
      t.pings.det.textContent = `${p.ok ?? 0} ok · ${p.fallidos ?? 0} fallidos · ${p.timeouts ?? 0} timeouts`;
      const u = o.ultimo_ping_del_ciclo;
      t.ultimo = u ? (u.resultado === "ok" ? fmtMs(u.latencia_ms) : u.resultado) : "—";
      const dx = o.diagnostico ? "Diagnóstico: " + o.diagnostico : "";
      if (t.diagnostico.textContent !== dx) t.diagnostico.textContent = dx;
      t.diagnostico.hidden = !o.diagnostico;
    }
    document.title = `${peor} · Monitor de disponibilidad`;
    pintarTiempos();
  }

  /** The "since" texts, which change with time alone. */
  function pintarTiempos() {
    const n = ahora();
    for (const o of st.objetivos) {
      const t = st.tarjetas.get(o.servicio);
      if (!t) continue;
      const desde = Date.parse(o.estado_desde);
      t.desde.textContent = isFinite(desde) ? `${o.estado} desde hace ${fmtDuracion(n - desde)}` : "";
    }
    for (const fila of document.querySelectorAll("#workers tr[data-worker]")) {
      const w = Date.parse(fila.dataset.ultimo);
      fila.querySelector(".hace").textContent = isFinite(w) ? fmtHace(n - w) : "—";
    }
  }

  /** Availability and latency percentiles over the chosen window, from the points. */
  function calcularCifras() {
    const fin = ahora();
    const ini = fin - st.ventana * 1000;
    const etiqueta = etiquetaVentana();
    for (const o of st.objetivos) {
      const t = st.tarjetas.get(o.servicio);
      const s = st.series.get(o.servicio);
      if (!t || !s) continue;
      let total = 0, ok = 0;
      const lat = [];
      s.recorrer((tt, ms, r) => {
        if (tt < ini || tt > fin) return;
        total++;
        if (r === 0) { ok++; lat.push(ms); }
      });
      lat.sort((a, b) => a - b);
      const pct = q => lat.length ? lat[Math.min(lat.length - 1, Math.ceil(q * lat.length) - 1)] : null;
      t.lat.dd.textContent = t.ultimo ?? "—";
      t.lat.det.textContent = lat.length ? `p50 ${fmtMs(pct(0.5))} · p95 ${fmtMs(pct(0.95))} · ${etiqueta}` : `sin pings en ${etiqueta}`;
      const disp = total ? (ok * 100) / total : null;
      t.disp.dd.textContent = fmtPct(disp);
      t.disp.dd.dataset.valor = disp == null ? "" : disp.toFixed(2);
      const servidor = o.disponibilidad == null ? "—" : fmtPct(o.disponibilidad);
      t.disp.det.textContent = `${total} pings en ${etiqueta} · últimos ${st.ajustes ? st.ajustes.ventana_disponibilidad : "?"}: ${servidor}`;
      t.relleno.style.width = (disp ?? 0).toFixed(2) + "%";
      t.barra.dataset.nivel = disp == null || disp >= 99 ? "alto" : disp >= 90 ? "medio" : "bajo";
    }
  }

  function etiquetaVentana() {
    return st.ventana >= 3600 ? "1 h" : st.ventana / 60 + " min";
  }

  // ---- Workers and changes ---------------------------------------------------------------

  function pintarWorkers() {
    const cuerpo = document.querySelector("#workers tbody");
    const filas = [];
    for (const w of st.workers) {
      const tr = el("tr");
      tr.dataset.worker = w.hostname;
      tr.dataset.vivo = w.alive ? "si" : "no";
      tr.dataset.ultimo = w.last_heartbeat;
      const host = el("td", "host", w.hostname);
      host.append(el("span", "sw", w.sw_ident));
      const estado = el("td");
      estado.append(el("span", "chip " + (w.alive ? "vivo" : "muerto"), w.alive ? "vivo" : "sin heartbeat"));
      const hace = el("td", "hace");
      hace.title = new Date(Date.parse(w.last_heartbeat)).toLocaleString("es-ES");
      filas.push(tr);
      tr.dataset.control = siNo(w.responde_control);
      tr.dataset.consume = siNo(w.consume);
      tr.append(host, estado, hace,
        el("td", "num", Number(w.processed).toLocaleString("es-ES")),
        el("td", "num", String(w.active)),
        celdaControl(w), celdaConsume(w));
    }
    if (!filas.length) {
      const tr = el("tr", "vacio");
      const td = el("td", null, "Ningún worker ha emitido heartbeats.");
      td.colSpan = 7;
      tr.append(td);
      filas.push(tr);
    }
    cuerpo.replaceChildren(...filas);
    const vivos = st.workers.filter(w => w.alive).length;
    const responden = st.workers.filter(w => w.responde_control === true).length;
    const control = st.ajustes && st.ajustes.control_intervalo_ms > 0
      ? ` · ${responden} responde${responden === 1 ? "" : "n"} al ping de control`
      : "";
    document.getElementById("resumen-workers").textContent =
      `${vivos} vivo${vivos === 1 ? "" : "s"} de ${st.workers.length}, según sus heartbeats${control}`;
    pintarTiempos();
  }

  function siNo(v) { return v === true ? "si" : v === false ? "no" : ""; }

  /** A worker's own answer to the control ping: `{"ok": "pong"}` reads as "pong". */
  function textoRespuesta(r) {
    if (r == null) return "";
    if (typeof r === "object" && !Array.isArray(r) && Object.keys(r).length === 1) {
      const v = Object.values(r)[0];
      if (typeof v === "string") return v;
    }
    return typeof r === "string" ? r : JSON.stringify(r);
  }

  function celdaControl(w) {
    const td = el("td", "control");
    if (w.responde_control == null) {
      td.append(el("span", "chip desconocido", "—"));
      td.title = "Todavía sin ping de control";
      return td;
    }
    if (w.responde_control) {
      td.append(el("span", "chip vivo", "responde"));
      const det = el("span", "detalle");
      det.append(el("span", "respuesta", textoRespuesta(w.respuesta_control)),
        document.createTextNode(" · " + fmtMs(w.latencia_control_ms)));
      td.append(det);
      td.title = "Respuesta: " + JSON.stringify(w.respuesta_control);
    } else {
      td.append(el("span", "chip muerto", "sin respuesta"));
      const r = Date.parse(w.ultima_respuesta_control);
      td.title = isFinite(r) ? "Respondió por última vez " + new Date(r).toLocaleString("es-ES") : "Nunca respondió al control";
    }
    return td;
  }

  function celdaConsume(w) {
    const td = el("td", "control");
    if (w.consume == null) {
      td.append(el("span", "chip desconocido", "—"));
      return td;
    }
    td.append(el("span", "chip " + (w.consume ? "vivo" : "atascado"), w.consume ? "sí" : "no consume"));
    const espera = w.mensajes_en_cola ?? 0;
    const det = w.consume
      ? `${espera} en cola`
      : `${espera} en cola · sin avanzar ${fmtDuracion((w.sin_consumir_s ?? 0) * 1000)}`;
    td.append(el("span", "detalle", det));
    if (w.colas) td.title = "Colas: " + w.colas.join(", ");
    return td;
  }

  function pintarCambios() {
    const lista = document.getElementById("cambios");
    const items = [];
    for (let i = st.cambios.length - 1; i >= 0 && items.length < 50; i--) {
      const c = st.cambios[i];
      const li = el("li");
      li.dataset.de = c.de;
      li.dataset.a = c.a;
      const hora = el("span", "hora", fmtHora(c.t, true, true));
      hora.title = c.en;
      const tr = el("div", "transicion");
      const de = el("span", "estado-mini", c.de); de.dataset.estado = c.de;
      const a = el("span", "estado-mini", c.a); a.dataset.estado = c.a;
      const detalle = c.a === "OK" || (c.de === "CAIDO" && c.a === "DEGRADADO")
        ? `tras ${c.tras_s.toFixed(1)} s en ${c.de} · detectado en ${c.detectado_en_s.toFixed(3)} s`
        : `detectado en ${c.detectado_en_s.toFixed(3)} s`;
      tr.append(el("span", "servicio", c.servicio), de, el("span", "flecha", "→"), a, el("span", "nota", detalle));
      li.append(hora, tr, el("span", "motivo", c.motivo));
      items.push(li);
    }
    if (!items.length) items.push(el("li", "vacio", "Sin cambios de estado."));
    lista.replaceChildren(...items);
  }

  // ---- The chart -------------------------------------------------------------------------

  let dibujoPedido = false;
  function pedirDibujo() { dibujoPedido = true; }

  function dibujar() {
    const canvas = document.getElementById("grafico");
    const rect = canvas.getBoundingClientRect();
    if (rect.width < 10 || rect.height < 10) return;
    const dpr = window.devicePixelRatio || 1;
    const W = rect.width, H = rect.height;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);

    const a = st.ajustes;
    const m = { izq: 58, der: 142, arr: 12, abj: 26 };
    const pw = W - m.izq - m.der, ph = H - m.arr - m.abj;
    const fin = st.pausado ? st.finPausa : ahora();
    const ini = fin - st.ventana * 1000;
    const x = t => m.izq + ((t - ini) / (fin - ini)) * pw;

    // Y: logarithmic, from a power of ten under the fastest echo to above the ASR line.
    let minimo = Infinity;
    for (const s of st.series.values()) {
      s.recorrer((t, ms, r) => { if (r === 0 && t >= ini && t <= fin && ms > 0 && ms < minimo) minimo = ms; });
    }
    const techo = Math.max(a ? a.asr_ms : 2000, a ? a.timeout_ms : 750) * 1.6;
    const lmin = Math.max(-2, Math.min(0, Math.floor(Math.log10(isFinite(minimo) ? minimo : 1))));
    const lmax = Math.log10(techo);
    const y = v => m.arr + (1 - (Math.log10(Math.min(Math.max(v, 10 ** lmin), techo)) - lmin) / (lmax - lmin)) * ph;

    ctx.font = "11.5px system-ui, sans-serif";
    ctx.textBaseline = "middle";

    // State bands, from the changes (each state lasts until the next change of its target).
    const porServicio = new Map();
    for (const c of st.cambios) {
      if (!porServicio.has(c.servicio)) porServicio.set(c.servicio, []);
      porServicio.get(c.servicio).push(c);
    }
    for (const lista of porServicio.values()) {
      lista.sort((p, q) => p.t - q.t);
      lista.forEach((c, i) => {
        if (c.a === "OK") return;
        const desde = Math.max(c.t, ini);
        const hasta = Math.min(i + 1 < lista.length ? lista[i + 1].t : fin, fin);
        if (hasta <= desde) return;
        ctx.fillStyle = c.a === "CAIDO" ? "rgba(239,68,68,0.16)" : "rgba(245,158,11,0.14)";
        ctx.fillRect(x(desde), m.arr, Math.max(1, x(hasta) - x(desde)), ph);
      });
    }

    // Grid: powers of ten, and time ticks.
    ctx.strokeStyle = COLOR.rejilla;
    ctx.fillStyle = COLOR.ejes;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (let e = lmin; e <= Math.floor(lmax); e++) {
      const v = 10 ** e, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(m.izq, yy); ctx.lineTo(m.izq + pw, yy); ctx.stroke();
      ctx.fillText(v >= 1000 ? v / 1000 + " s" : v + " ms", m.izq - 8, yy);
    }
    const paso = st.ventana <= 60 ? 10e3 : st.ventana <= 600 ? 60e3 : 600e3;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(ini / paso) * paso; t <= fin; t += paso) {
      const xx = Math.round(x(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xx, m.arr); ctx.lineTo(xx, m.arr + ph); ctx.stroke();
      ctx.fillText(fmtHora(t, paso < 60e3), xx, m.arr + ph + 7);
    }
    ctx.strokeStyle = "rgba(147,160,184,0.35)";
    ctx.strokeRect(m.izq + 0.5, m.arr + 0.5, pw, ph);

    // Reference lines.
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const referencia = (v, color, texto) => {
      const yy = Math.round(y(v)) + 0.5;
      ctx.save();
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = color; ctx.lineWidth = 1.25;
      ctx.beginPath(); ctx.moveTo(m.izq, yy); ctx.lineTo(m.izq + pw, yy); ctx.stroke();
      ctx.restore();
      ctx.fillStyle = color;
      ctx.fillText(texto, m.izq + pw + 8, yy);
    };
    if (a) {
      referencia(a.umbral_degradado_ms, COLOR.DEGRADADO, `DEGRADADO ${fmtMs(a.umbral_degradado_ms)}`);
      referencia(a.timeout_ms, COLOR.CAIDO, `timeout ${fmtMs(a.timeout_ms)}`);
      referencia(a.asr_ms, COLOR.asr, `ASR ${fmtMs(a.asr_ms)}`);
    }

    // The series: each pixel column (2 px) shows the spread of its echoes and their
    // geometric mean; a column with a failure gets a red cross at the time it waited.
    const columnas = Math.max(1, Math.floor(pw / 2));
    const ancho = pw / columnas;
    const gapMs = Math.max(3 * (a ? a.intervalo_ms : 250), 1.5 * (fin - ini) / columnas);
    let visibles = 0, indice = 0;
    ctx.save();
    ctx.beginPath(); ctx.rect(m.izq, m.arr, pw, ph); ctx.clip();
    for (const s of st.series.values()) {
      const color = COLORES_SERIE[indice++ % COLORES_SERIE.length];
      const lo = new Float64Array(columnas).fill(Infinity);
      const hi = new Float64Array(columnas);
      const suma = new Float64Array(columnas);
      const n = new Uint32Array(columnas);
      const ultimo = new Float64Array(columnas);
      const fallo = new Float64Array(columnas);
      s.recorrer((t, ms, r) => {
        if (t < ini || t > fin) return;
        visibles++;
        const c = Math.min(columnas - 1, Math.floor(((t - ini) / (fin - ini)) * columnas));
        if (r === 0) {
          const v = Math.max(ms, 1e-3);
          if (v < lo[c]) lo[c] = v;
          if (v > hi[c]) hi[c] = v;
          suma[c] += Math.log10(v);
          n[c]++;
          if (t > ultimo[c]) ultimo[c] = t;
        } else if (ms > fallo[c]) {
          fallo[c] = Math.max(ms, 1e-3);
        }
      });
      // Spread.
      ctx.strokeStyle = color + "55";
      ctx.lineWidth = Math.max(1, ancho - 0.5);
      ctx.beginPath();
      for (let c = 0; c < columnas; c++) {
        if (n[c] > 1 && hi[c] > lo[c]) {
          const xx = m.izq + (c + 0.5) * ancho;
          ctx.moveTo(xx, y(lo[c])); ctx.lineTo(xx, y(hi[c]));
        }
      }
      ctx.stroke();
      // Mean line, broken where no echo arrived for a while.
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.6;
      ctx.lineJoin = "round";
      ctx.beginPath();
      let previo = -Infinity;
      for (let c = 0; c < columnas; c++) {
        if (!n[c]) continue;
        const xx = m.izq + (c + 0.5) * ancho, yy = y(10 ** (suma[c] / n[c]));
        if (ultimo[c] - previo > gapMs) ctx.moveTo(xx, yy); else ctx.lineTo(xx, yy);
        previo = ultimo[c];
      }
      ctx.stroke();
      if (st.ventana <= 60) {
        ctx.fillStyle = color;
        for (let c = 0; c < columnas; c++) {
          if (!n[c]) continue;
          ctx.beginPath();
          ctx.arc(m.izq + (c + 0.5) * ancho, y(10 ** (suma[c] / n[c])), 1.8, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      // Failures.
      ctx.strokeStyle = COLOR.fallo;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (let c = 0; c < columnas; c++) {
        if (!fallo[c]) continue;
        const xx = m.izq + (c + 0.5) * ancho, yy = y(fallo[c]);
        ctx.moveTo(xx - 3, yy - 3); ctx.lineTo(xx + 3, yy + 3);
        ctx.moveTo(xx + 3, yy - 3); ctx.lineTo(xx - 3, yy + 3);
      }
      ctx.stroke();
    }
    ctx.restore();

    if (!visibles) {
      ctx.fillStyle = COLOR.ejes;
      ctx.textAlign = "center";
      ctx.fillText(st.ajustes ? "Sin pings en esta ventana" : "Esperando datos…", m.izq + pw / 2, m.arr + ph / 2);
    }
    if (st.pausado) {
      const texto = "❚❚ EN PAUSA";
      ctx.textAlign = "left";
      ctx.fillStyle = "rgba(11,17,32,0.8)";
      ctx.fillRect(m.izq + 8, m.arr + 8, ctx.measureText(texto).width + 20, 22);
      ctx.fillStyle = "#fcd34d";
      ctx.fillText(texto, m.izq + 18, m.arr + 19);
    }
    canvas.dataset.puntos = String(visibles);
    canvas.dataset.ventana = String(st.ventana);
  }

  // ---- Controls and the clock ------------------------------------------------------------

  function elegirVentana(segundos) {
    st.ventana = segundos;
    for (const b of document.querySelectorAll("[data-ventana]")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.ventana) === segundos));
    }
    calcularCifras();
    pedirDibujo();
  }

  function alternarPausa() {
    st.pausado = !st.pausado;
    if (st.pausado) st.finPausa = ahora();
    const b = document.getElementById("pausa");
    b.textContent = st.pausado ? "Reanudar" : "Pausar";
    b.setAttribute("aria-pressed", String(st.pausado));
    pedirDibujo();
  }

  let ultimaCifra = 0;
  function latido() {
    const limite = ahora() - HORA_MS;
    for (const s of st.series.values()) s.recortar(limite);
    if (document.hidden) return;
    pintarTiempos();
    if (Date.now() - ultimaCifra >= 1000) {
      ultimaCifra = Date.now();
      calcularCifras();
    }
    // While live, the chart scrolls with time; paused, it is redrawn only when asked.
    if (!st.pausado || dibujoPedido) {
      dibujoPedido = false;
      dibujar();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const b of document.querySelectorAll("[data-ventana]")) {
      b.addEventListener("click", () => elegirVentana(Number(b.dataset.ventana)));
    }
    document.getElementById("pausa").addEventListener("click", alternarPausa);
    window.addEventListener("resize", pedirDibujo);
    document.addEventListener("visibilitychange", pedirDibujo);
    setInterval(latido, 250);
    conectar();
    dibujar();
  });

  // For tests and the curious: the points held, per target (bounded by ajustes.puntos_max).
  window.panel = {
    puntos: () => Object.fromEntries([...st.series].map(([k, s]) => [k, s.n])),
    capacidad,
  };
})();
