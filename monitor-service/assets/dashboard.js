// The monitor's dashboard, in the browser: listens to /monitor/stream (server-sent events),
// keeps at most the last hour of pings per target in fixed-size ring buffers (typed arrays,
// allocated once: memory does not grow however long the page stays open), and redraws the
// state cards, the latency chart (a <canvas>), the workers and the state changes. It also
// polls /monitor/colas every second for the queues: their depth and age, the held, parked and
// quarantined counts, the workers' queues and concurrency, whether any worker is connected,
// and the last hour of depth and throughput, drawn next to the latency chart.
//
// Events: `snapshot` (on every (re)connection: settings, summaries, workers, the last hour of
// points, recent changes), `ping`, `cambio`, `estado` (every second), `perdidos`.
// Stable hooks for tests: [data-servicio][data-estado] on each target's card (and its
// [data-rol="diagnostico"] line), #grafico's data-puntos, #conexion's data-conectado, body's
// data-listo, on each worker's row data-worker, data-vivo, data-control and data-consume
// ("si", "no", or "" when unknown), and on each change of #cambios data-de and data-a.
// Queues: #seccion-colas data-cargada ("si" once /monitor/colas answered), each
// #colas tr[data-cola] with data-pendientes, each #cifra-* with data-valor, #sin-workers
// (hidden unless no worker is connected; body data-sin-workers mirrors it), each worker row's
// [data-rol="colas"] and [data-rol="concurrencia"], and #grafico-colas / #grafico-rendimiento's
// data-puntos.
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
    colas: null,             // the last answer of /monitor/colas
    historialColas: [],      // its samples, accumulated: each poll asks only for newer ones
    porHost: new Map(),      // hostname -> its entry in colas.trabajadores
  };
  const COLAS_CADA_MS = 1000;

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

  /** A count with its unit, singular or plural: "1 mensaje", "12 mensajes". */
  function fmtCuenta(n, uno, varios) {
    if (n == null || !isFinite(n)) return "—";
    return Number(n).toLocaleString("es-ES") + NBSP + (n === 1 ? uno : varios);
  }

  /** Seconds, precise when short: "0,4 s", "12 s", "3 min 5 s". */
  function fmtSegundos(s) {
    if (s == null || !isFinite(s)) return "—";
    if (s < 10) return s.toLocaleString("es-ES", { maximumFractionDigits: 1 }) + NBSP + "s";
    return fmtDuracion(s * 1000).replace(/ (s|min|h|d)\b/g, NBSP + "$1");
  }

  function fmtRendimiento(v) {
    if (v == null || !isFinite(v)) return "—";
    return v.toLocaleString("es-ES", { maximumFractionDigits: v < 10 ? 2 : 1 }) + NBSP + "tareas/s";
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

  /** The stream's workers, plus any that only /monitor/colas knows of yet. */
  function todosLosWorkers() {
    const lista = st.workers.slice();
    const vistos = new Set(lista.map(w => w.hostname));
    for (const t of (st.colas && st.colas.trabajadores) || []) {
      if (vistos.has(t.hostname)) continue;
      lista.push({
        hostname: t.hostname, alive: t.vivo, last_heartbeat: t.ultimo_latido,
        processed: t.procesadas, active: t.activas, sw_ident: t.software, colas: t.colas,
      });
    }
    return lista;
  }

  function pintarWorkers() {
    const cuerpo = document.querySelector("#workers tbody");
    const filas = [];
    const workers = todosLosWorkers();
    for (const w of workers) {
      const deColas = st.porHost.get(w.hostname) || {};
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
      const colas = w.colas || deColas.colas;
      const tdColas = el("td", "colas-worker", colas && colas.length ? colas.join(", ") : "—");
      tdColas.dataset.rol = "colas";
      const concurrencia = deColas.concurrencia;
      const tdConc = el("td", "num", concurrencia == null ? "—" : fmtCuenta(concurrencia, "proceso", "procesos"));
      tdConc.dataset.rol = "concurrencia";
      tr.append(host, estado, hace, tdColas, tdConc,
        el("td", "num", Number(w.processed).toLocaleString("es-ES")),
        el("td", "num", String(w.active)),
        celdaControl(w), celdaConsume(w));
    }
    if (!filas.length) {
      const tr = el("tr", "vacio");
      const td = el("td", null, "Ningún worker ha emitido heartbeats.");
      td.colSpan = 9;
      tr.append(td);
      filas.push(tr);
    }
    cuerpo.replaceChildren(...filas);
    const vivos = workers.filter(w => w.alive).length;
    const responden = st.workers.filter(w => w.responde_control === true).length;
    const control = st.ajustes && st.ajustes.control_intervalo_ms > 0
      ? ` · ${responden} responde${responden === 1 ? "" : "n"} al ping de control`
      : "";
    document.getElementById("resumen-workers").textContent =
      `${vivos} vivo${vivos === 1 ? "" : "s"} de ${workers.length}, según sus heartbeats${control}`;
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

  // ---- Queues (/monitor/colas) -----------------------------------------------------------

  let colasEnCurso = false;
  async function pedirColas() {
    if (colasEnCurso) return;
    colasEnCurso = true;
    try {
      // After the first answer, only the samples newer than the last one held.
      const ultimo = st.historialColas.length ? st.historialColas[st.historialColas.length - 1].t : null;
      const url = ultimo == null ? "/monitor/colas" : "/monitor/colas?desde=" + ultimo;
      const r = await fetch(url, { headers: { accept: "application/json" }, cache: "no-store" });
      if (!r.ok) {
        let detalle = "HTTP " + r.status;
        try { const e = await r.json(); if (e && e.detalle) detalle = e.detalle; } catch (_) { /* not JSON */ }
        notaColas(`/monitor/colas no responde: ${detalle}`);
        return;
      }
      aplicarColas(await r.json());
    } catch (err) {
      notaColas("/monitor/colas no responde (sin conexión)");
    } finally {
      colasEnCurso = false;
    }
  }

  function notaColas(texto) {
    const n = document.getElementById("nota-colas");
    if (n.textContent !== texto) n.textContent = texto;
  }

  function cifra(id, valor, texto) {
    const dd = document.getElementById(id);
    dd.dataset.valor = valor == null ? "" : String(valor);
    if (dd.textContent !== texto) dd.textContent = texto;
  }

  function aplicarColas(d) {
    st.colas = d;
    const nuevos = d.historial || [];
    // A monitor that restarted has a history that starts again: take it whole.
    if (nuevos.length && st.historialColas.length && nuevos[0].t < st.historialColas[st.historialColas.length - 1].t) {
      st.historialColas = [];
    }
    st.historialColas.push(...nuevos);
    if (st.historialColas.length) {
      const corte = st.historialColas[st.historialColas.length - 1].t - HORA_MS;
      const primero = st.historialColas.findIndex(h => h.t >= corte);
      if (primero > 0) st.historialColas.splice(0, primero);
    }
    st.porHost = new Map((d.trabajadores || []).map(t => [t.hostname, t]));
    const colas = d.colas || [];
    const total = colas.reduce((a, c) => a + (c.pendientes || 0), 0);
    const antiguedades = colas.map(c => c.antiguedad_s).filter(v => v != null && isFinite(v));
    const antigua = antiguedades.length ? Math.max(...antiguedades) : null;
    cifra("cifra-pendientes", total, fmtCuenta(total, "mensaje", "mensajes"));
    cifra("cifra-antiguedad", antigua, antigua == null ? "nada espera" : fmtSegundos(antigua));
    cifra("cifra-rendimiento", d.rendimiento_por_s, fmtRendimiento(d.rendimiento_por_s));
    cifra("cifra-retenidos", d.retenidos, fmtCuenta(d.retenidos, "mensaje", "mensajes"));
    cifra("cifra-aparcados", d.aparcados, fmtCuenta(d.aparcados, "tarea", "tareas"));
    cifra("cifra-cuarentena", d.cuarentena, fmtCuenta(d.cuarentena, "mensaje", "mensajes"));
    cifra("cifra-conectados", d.trabajadores_conectados, fmtCuenta(d.trabajadores_conectados, "worker", "workers"));
    const cuarentena = document.getElementById("cifra-cuarentena");
    cuarentena.classList.toggle("alerta", (d.cuarentena || 0) > 0);
    const det = document.getElementById("detalle-cuarentena");
    const link = el("a", null, d.cuarentena_descartados
      ? `ver mensajes · ${fmtCuenta(d.cuarentena_descartados, "descartado", "descartados")}`
      : "ver mensajes");
    link.href = "/cuarentena";
    det.replaceChildren(link);

    // The queues' table.
    const filas = colas.map(c => {
      const tr = el("tr");
      tr.dataset.cola = c.nombre;
      tr.dataset.pendientes = String(c.pendientes);
      tr.append(
        el("td", "host cola-nombre", c.nombre),
        el("td", "num", fmtCuenta(c.pendientes, "mensaje", "mensajes")),
        el("td", "num", c.antiguedad_s == null ? "—" : fmtSegundos(c.antiguedad_s)
          + (c.antiguedad_max_s != null && c.antiguedad_max_s - c.antiguedad_s >= 1
            ? ` – ${fmtSegundos(c.antiguedad_max_s)}` : "")),
        el("td", "num", c.consumidores == null ? "—" : fmtCuenta(c.consumidores, "worker", "workers")),
        el("td", "num", c.procesos == null ? "—" : fmtCuenta(c.procesos, "proceso", "procesos")));
      return tr;
    });
    if (!filas.length) {
      const tr = el("tr", "vacio");
      const td = el("td", null, "Ninguna cola observada.");
      td.colSpan = 5;
      tr.append(td);
      filas.push(tr);
    }
    document.querySelector("#colas tbody").replaceChildren(...filas);

    // No worker at all: the queues fill and nobody takes them. Not an outage of the monitor
    // (CAIDO says a target does not answer): a state of its own, in its own colour.
    const ninguno = d.trabajadores_conectados === 0;
    const aviso = document.getElementById("sin-workers");
    aviso.hidden = !ninguno;
    document.body.dataset.sinWorkers = ninguno ? "si" : "no";
    if (ninguno) {
      document.getElementById("sin-workers-detalle").textContent = total
        ? `${fmtCuenta(total, "mensaje espera", "mensajes esperan")} y nadie consume las colas; arranca un worker.`
        : "Nadie consume las colas: las tareas que lleguen esperarán hasta que arranque un worker.";
    }

    const muestreado = Date.parse(d.muestreado);
    notaColas(d.obsoleto
      ? `Redis no responde: cifras de la última muestra${isFinite(muestreado) ? ", de las " + fmtHora(muestreado) : ""}`
      : `muestreadas cada ${fmtMs(d.intervalo_ms)}` +
        (isFinite(muestreado) ? ` · última muestra ${fmtHora(muestreado)}` : " · aún sin muestra"));
    document.getElementById("seccion-colas").dataset.obsoleto = d.obsoleto ? "si" : "no";
    pintarLeyendaColas();
    document.getElementById("seccion-colas").dataset.cargada = "si";
    pintarWorkers();
    dibujarColas();
  }

  function colorCola(i) { return COLORES_SERIE[i % COLORES_SERIE.length]; }

  /** Queue names in a stable order: those of the last sample, then any only in the history. */
  function nombresColas() {
    const d = st.colas;
    if (!d) return [];
    const nombres = (d.colas || []).map(c => c.nombre);
    const vistos = new Set(nombres);
    for (const h of st.historialColas) {
      for (const n of Object.keys(h.pendientes || {})) {
        if (!vistos.has(n)) { vistos.add(n); nombres.push(n); }
      }
    }
    return nombres;
  }

  function pintarLeyendaColas() {
    const items = nombresColas().map((n, i) => {
      const li = el("li");
      const m = el("span", "muestra linea-serie");
      m.style.borderColor = colorCola(i);
      li.append(m, el("span", null, n));
      return li;
    });
    const li = el("li");
    li.append(el("span", "muestra discontinua retenidos"), el("span", null, "retenidos"));
    items.push(li);
    document.getElementById("leyenda-colas").replaceChildren(...items);
  }

  function dibujarColas() {
    const d = st.colas;
    const historial = st.historialColas;
    const nombres = nombresColas();
    const series = nombres.map((n, i) => ({
      color: colorCola(i),
      puntos: historial.map(h => [h.t, (h.pendientes || {})[n] ?? 0]),
    }));
    series.push({ color: "#93a0b8", discontinua: true, puntos: historial.map(h => [h.t, h.retenidos ?? 0]) });
    const paso = d ? d.intervalo_ms : 1000;
    dibujarLineas(document.getElementById("grafico-colas"), series, paso, v => v.toLocaleString("es-ES"));
    dibujarLineas(document.getElementById("grafico-rendimiento"),
      [{ color: "#34d399", relleno: true, puntos: historial.map(h => [h.t, h.rendimiento_por_s ?? 0]) }],
      paso, v => v.toLocaleString("es-ES", { maximumFractionDigits: 2 }));
  }

  /** A round ceiling for a linear axis: 1, 2 or 5 times a power of ten. */
  function techoRedondo(v) {
    if (!(v > 0)) return 1;
    const e = 10 ** Math.floor(Math.log10(v));
    for (const k of [1, 2, 5, 10]) if (k * e >= v) return k * e;
    return 10 * e;
  }

  /** A small time-series chart on a linear axis from zero, over the chosen window. */
  function dibujarLineas(canvas, series, pasoMs, fmtEje) {
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
    const m = { izq: 52, der: 12, arr: 10, abj: 24 };
    const pw = W - m.izq - m.der, ph = H - m.arr - m.abj;
    const fin = st.pausado ? st.finPausa : ahora();
    const ini = fin - st.ventana * 1000;
    const x = t => m.izq + ((t - ini) / (fin - ini)) * pw;
    let maximo = 0, visibles = 0;
    for (const s of series) {
      for (const [t, v] of s.puntos) {
        if (t < ini || t > fin) continue;
        visibles++;
        if (v > maximo) maximo = v;
      }
    }
    const techo = techoRedondo(maximo);
    const y = v => m.arr + (1 - Math.min(v, techo) / techo) * ph;

    ctx.font = "11.5px system-ui, sans-serif";
    ctx.strokeStyle = COLOR.rejilla;
    ctx.fillStyle = COLOR.ejes;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const v = (techo * i) / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(m.izq, yy); ctx.lineTo(m.izq + pw, yy); ctx.stroke();
      ctx.fillText(fmtEje(v), m.izq - 8, yy);
    }
    const paso = st.ventana <= 60 ? 15e3 : st.ventana <= 600 ? 120e3 : 900e3;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(ini / paso) * paso; t <= fin; t += paso) {
      const xx = Math.round(x(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xx, m.arr); ctx.lineTo(xx, m.arr + ph); ctx.stroke();
      ctx.fillText(fmtHora(t, paso < 60e3), xx, m.arr + ph + 7);
    }
    ctx.strokeStyle = "rgba(147,160,184,0.35)";
    ctx.strokeRect(m.izq + 0.5, m.arr + 0.5, pw, ph);

    // Lines, broken where samples are missing (the monitor was down, or Redis was).
    const hueco = 3 * Math.max(pasoMs || 1000, 250);
    ctx.save();
    ctx.beginPath(); ctx.rect(m.izq, m.arr, pw, ph); ctx.clip();
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.6;
      ctx.lineJoin = "round";
      ctx.setLineDash(s.discontinua ? [5, 4] : []);
      ctx.beginPath();
      let previo = -Infinity, primero = null, ultimo = null;
      for (const [t, v] of s.puntos) {
        if (t < ini - hueco || t > fin) continue;
        const xx = x(t), yy = y(v);
        if (t - previo > hueco) ctx.moveTo(xx, yy); else ctx.lineTo(xx, yy);
        if (primero == null) primero = xx;
        ultimo = xx;
        previo = t;
      }
      ctx.stroke();
      if (s.relleno && primero != null) {
        ctx.lineTo(ultimo, y(0));
        ctx.lineTo(primero, y(0));
        ctx.closePath();
        ctx.fillStyle = s.color + "22";
        ctx.fill();
      }
    }
    ctx.restore();
    if (!visibles) {
      ctx.fillStyle = COLOR.ejes;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(st.colas ? "Sin muestras en esta ventana" : "Esperando /monitor/colas…", m.izq + pw / 2, m.arr + ph / 2);
    }
    canvas.dataset.puntos = String(visibles);
    canvas.dataset.ventana = String(st.ventana);
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
    // Narrow (a phone): the reference lines are labelled inside the plot, not beside it.
    const estrecho = W < 600;
    const m = { izq: 58, der: estrecho ? 10 : 142, arr: 12, abj: 26 };
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
    const paso = st.ventana <= 60 ? (estrecho ? 20e3 : 10e3) : st.ventana <= 600 ? (estrecho ? 120e3 : 60e3) : 600e3;
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
      if (estrecho) {
        ctx.save();
        ctx.textAlign = "right";
        ctx.textBaseline = "bottom";
        ctx.fillText(texto, m.izq + pw - 4, yy - 2);
        ctx.restore();
      } else {
        ctx.fillText(texto, m.izq + pw + 8, yy);
      }
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
      dibujarColas();
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
    pedirColas();
    setInterval(() => { if (!document.hidden) pedirColas(); }, COLAS_CADA_MS);
  });

  // For tests and the curious: the points held, per target (bounded by ajustes.puntos_max).
  window.panel = {
    puntos: () => Object.fromEntries([...st.series].map(([k, s]) => [k, s.n])),
    capacidad,
  };
})();
