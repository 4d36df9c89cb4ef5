// The monitor's two lookup pages, chosen by <body data-pagina>: "tarea" (one task by id, from
// /monitor/tareas/{id}, with buttons to revoke it while it has not finished) and "cuarentena" (the quarantined messages, from /monitor/cuarentena,
// each with a button for POST /monitor/cuarentena/{id}/reencolar).
//
// Everything shown here comes from task messages, which anyone who can write to Redis can
// forge: it is hostile input. It only ever enters the page as text (textContent, attribute
// values set one by one, URLs built with encodeURIComponent); never as HTML.
//
// Stable hooks for tests: body's data-listo ("si" once a lookup or a load finished);
// on the task page #tarea's data-id, #estado-tarea's data-estado, each field's
// [data-campo], #mensaje-tarea's data-codigo (the server's error code), the buttons
// [data-rol="revocar"] and [data-rol="terminar"] (POST /monitor/tareas/{id}/revocar) and their
// answer #respuesta-revocar with data-codigo ("revocada" or the error code); on the quarantine page
// each entry's li[data-entrada] (with data-tarea-id), its button [data-rol="reencolar"] and
// its answer [data-rol="respuesta"] with data-codigo ("reencolada" or the error code).
"use strict";

(() => {
  const NBSP = "\u00a0";
  const FINALES = new Set(["SUCCESS", "FAILURE", "REVOKED", "REJECTED"]);

  function el(tag, clase, texto) {
    const e = document.createElement(tag);
    if (clase) e.className = clase;
    if (texto != null) e.textContent = texto;
    return e;
  }

  /** A request whose answer is JSON (or not: then `cuerpo` is null). */
  async function pedir(url, opciones) {
    try {
      const r = await fetch(url, { cache: "no-store", headers: { accept: "application/json" }, ...opciones });
      let cuerpo = null;
      try { cuerpo = await r.json(); } catch (_) { /* not JSON */ }
      return { status: r.status, cuerpo };
    } catch (_) {
      return { status: 0, cuerpo: null };
    }
  }

  /** What an error answer says, in one line. */
  function textoError(r) {
    if (r.status === 0) return "El monitor no responde (sin conexión).";
    if (r.status === 401) return "El monitor pide MONITOR_TOKEN: entra una vez por /?token=<token>.";
    const d = r.cuerpo && r.cuerpo.detalle;
    return d ? `${d} (HTTP ${r.status})` : `HTTP ${r.status}`;
  }

  function mostrar(p, texto, tipo, codigo) {
    p.textContent = texto;
    p.dataset.tipo = tipo;
    p.dataset.codigo = codigo || "";
    p.hidden = !texto;
  }

  function dos(n) { return n < 10 ? "0" + n : String(n); }

  function fmtDuracion(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + NBSP + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + NBSP + "min " + (s % 60) + NBSP + "s";
    const h = Math.floor(m / 60);
    if (h < 24) return h + NBSP + "h " + (m % 60) + NBSP + "min";
    return Math.floor(h / 24) + NBSP + "d " + (h % 24) + NBSP + "h";
  }

  /** An RFC 3339 time as the local date and time, and how long ago (kept current). */
  function celdaHora(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t)) return el("span", null, "—");
    const d = new Date(t);
    const span = el("span");
    const fecha = `${d.getFullYear()}-${dos(d.getMonth() + 1)}-${dos(d.getDate())} ` +
      `${dos(d.getHours())}:${dos(d.getMinutes())}:${dos(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
    const hace = el("span", "nota");
    hace.dataset.t = String(t);
    span.append(el("span", "mono", fecha), document.createTextNode(" "), hace);
    span.title = iso;
    return span;
  }

  function refrescarHaces() {
    const n = Date.now();
    for (const e of document.querySelectorAll("[data-t]")) {
      e.textContent = `(hace ${fmtDuracion(n - Number(e.dataset.t))})`;
    }
  }

  function fmtSegundos(s) {
    if (s == null || !isFinite(s)) return "—";
    if (s < 1) return (s * 1000).toLocaleString("es-ES", { maximumFractionDigits: 2 }) + NBSP + "ms";
    return s.toLocaleString("es-ES", { maximumFractionDigits: 3 }) + NBSP + "s";
  }

  /** A value as readable text: strings as they are, anything else as indented JSON. */
  function comoTexto(v) {
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }

  function bloque(texto) { return el("pre", "bloque", texto); }

  function enlaceTarea(id) {
    const a = el("a", "mono", id);
    a.href = "/tarea?id=" + encodeURIComponent(id);
    return a;
  }

  // ---- One task ----------------------------------------------------------------------------

  let refresco = null;

  function idDeLaDireccion() {
    const q = new URLSearchParams(location.search).get("id");
    if (q && q.trim()) return q.trim();
    let h = location.hash.slice(1);
    try { h = decodeURIComponent(h); } catch (_) { /* keep it raw */ }
    return h.trim() || null;
  }

  async function buscarTarea(id, enDireccion) {
    clearTimeout(refresco);
    const mensaje = document.getElementById("mensaje-tarea");
    const seccion = document.getElementById("tarea");
    document.getElementById("id-tarea").value = id;
    if (enDireccion) history.replaceState(null, "", "/tarea?id=" + encodeURIComponent(id));
    const r = await pedir("/monitor/tareas/" + encodeURIComponent(id));
    if (r.status === 200 && r.cuerpo) {
      mostrar(mensaje, "", "ok");
      pintarTarea(r.cuerpo);
      seccion.hidden = false;
      // Until it ends, a task changes: follow it.
      if (!FINALES.has(r.cuerpo.estado)) refresco = setTimeout(() => buscarTarea(id, false), 1000);
    } else {
      seccion.hidden = true;
      const codigo = r.cuerpo && r.cuerpo.error;
      const texto = r.status === 404
        ? `No se sabe nada de la tarea «${id}»: ni su resultado ni eventos suyos. ${textoError(r)}`
        : r.status === 400 ? `Id no válido: ${textoError(r)}` : textoError(r);
      mostrar(mensaje, texto, r.status === 404 ? "aviso" : "error", codigo);
    }
    document.body.dataset.listo = "si";
  }

  function pintarTarea(t) {
    const seccion = document.getElementById("tarea");
    // Another task: the answer to revoking the previous one no longer applies.
    if (seccion.dataset.id !== t.id) mostrar(document.getElementById("respuesta-revocar"), "", "ok");
    seccion.dataset.id = t.id;
    pintarAcciones(t);
    document.getElementById("titulo-tarea").textContent = t.nombre ? t.nombre : "Tarea sin nombre conocido";
    const enlace = document.getElementById("enlace-tarea");
    enlace.replaceChildren(document.createTextNode("Enlace: "), enlaceTarea(t.id));
    const estado = document.getElementById("estado-tarea");
    estado.textContent = t.estado;
    estado.dataset.estado = t.estado;
    document.title = `${t.estado} · ${t.nombre || t.id} · Tarea`;

    const ficha = document.getElementById("ficha-tarea");
    const filas = [];
    const fila = (campo, titulo, valor) => {
      if (valor == null) return;
      const dt = el("dt", null, titulo);
      const dd = el("dd");
      dd.dataset.campo = campo;
      if (valor instanceof Node) dd.append(valor); else dd.textContent = String(valor);
      filas.push(dt, dd);
    };
    fila("id", "Id", el("span", "mono", t.id));
    fila("nombre", "Nombre", t.nombre);
    fila("args", "Args", t.args == null ? null : bloque(t.args));
    fila("kwargs", "Kwargs", t.kwargs == null ? null : bloque(t.kwargs));
    if (t.resultado != null || t.estado === "SUCCESS") fila("resultado", "Resultado", bloque(comoTexto(t.resultado)));
    if (t.error) {
      const caja = el("div");
      caja.append(el("span", "error-tarea", [t.error.tipo, t.error.mensaje].filter(Boolean).join(": ")));
      if (t.error.traceback) {
        const det = el("details");
        det.open = true;
        det.append(el("summary", null, "Traceback"), bloque(t.error.traceback));
        caja.append(det);
      }
      fila("error", "Error", caja);
    }
    fila("trabajador", "Worker", t.trabajador == null ? null : el("span", "mono", t.trabajador));
    fila("cola", "Cola", t.cola);
    fila("reintentos", "Reintentos", t.reintentos);
    fila("recibida", "Recibida", t.recibida == null ? null : celdaHora(t.recibida));
    fila("iniciada", "Iniciada", t.iniciada == null ? null : celdaHora(t.iniciada));
    fila("terminada", "Terminada", t.terminada == null ? null : celdaHora(t.terminada));
    fila("duracion", "Duración", t.duracion_s == null ? null : fmtSegundos(t.duracion_s));
    fila("fuentes", "Fuentes", (t.fuentes || []).length
      ? t.fuentes.map(f => f === "resultado" ? "resultado guardado" : f === "eventos" ? "eventos de tarea" : f).join(" · ")
      : null);
    ficha.replaceChildren(...filas);
    refrescarHaces();
  }

  /** Revocar while the task has not finished; Terminar too while it runs. */
  function pintarAcciones(t) {
    const abierta = !FINALES.has(t.estado);
    document.getElementById("acciones-tarea").hidden = !abierta;
    document.getElementById("terminar-tarea").hidden = !(abierta && t.estado === "STARTED");
  }

  async function revocar(terminar) {
    const id = document.getElementById("tarea").dataset.id;
    if (!id) return;
    const respuesta = document.getElementById("respuesta-revocar");
    const botones = [document.getElementById("revocar-tarea"), document.getElementById("terminar-tarea")];
    for (const b of botones) b.disabled = true;
    mostrar(respuesta, terminar ? "Terminando…" : "Revocando…", "aviso");
    const r = await pedir(`/monitor/tareas/${encodeURIComponent(id)}/revocar`, {
      method: "POST",
      headers: { accept: "application/json", "content-type": "application/json" },
      body: JSON.stringify({ terminar }),
    });
    for (const b of botones) b.disabled = false;
    // The page may have moved on to another task meanwhile.
    if (document.getElementById("tarea").dataset.id !== id) return;
    const codigo = r.cuerpo && r.cuerpo.error;
    if (r.status === 202 && r.cuerpo && r.cuerpo.revocada) {
      const texto = r.cuerpo.terminar
        ? `Revocada y enviada la orden de detenerla (${r.cuerpo.senal || "SIGTERM"}) a los workers.`
        : "Revocada: ningún worker la empezará. Si ya corría, sigue hasta acabar (usa Terminar para detenerla).";
      mostrar(respuesta, texto + " El estado se actualiza solo.", "ok", "revocada");
    } else if (r.status === 403 && codigo === "revocacion_deshabilitada") {
      mostrar(respuesta, "Revocar necesita MONITOR_TOKEN: actúa sobre los workers, y el monitor solo " +
        "lo permite con autenticación. Arranca monitor-service con MONITOR_TOKEN y entra por " +
        `/?token=<token>. (${textoError(r)})`, "aviso", codigo);
    } else {
      mostrar(respuesta, `No se pudo revocar: ${textoError(r)}`, "error", codigo);
    }
  }

  function iniciarTarea() {
    document.getElementById("revocar-tarea").addEventListener("click", () => revocar(false));
    document.getElementById("terminar-tarea").addEventListener("click", () => revocar(true));
    const form = document.getElementById("buscar");
    form.addEventListener("submit", e => {
      e.preventDefault();
      const id = document.getElementById("id-tarea").value.trim();
      if (id) buscarTarea(id, true);
    });
    window.addEventListener("hashchange", () => {
      const id = idDeLaDireccion();
      if (id) buscarTarea(id, false);
    });
    const id = idDeLaDireccion();
    if (id) buscarTarea(id, false);
    else {
      document.body.dataset.listo = "si";
      document.getElementById("id-tarea").focus();
    }
  }

  // ---- Quarantine --------------------------------------------------------------------------

  async function cargarCuarentena() {
    const resumen = document.getElementById("resumen-cuarentena");
    const mensaje = document.getElementById("mensaje-cuarentena");
    const r = await pedir("/monitor/cuarentena?n=200");
    if (r.status !== 200 || !r.cuerpo) {
      mostrar(mensaje, textoError(r), "error", r.cuerpo && r.cuerpo.error);
      resumen.textContent = "Sin datos.";
      document.body.dataset.listo = "si";
      return;
    }
    const d = r.cuerpo;
    const entradas = d.entradas || [];
    let texto = `${d.total} mensaje${d.total === 1 ? "" : "s"} en cuarentena`;
    if (entradas.length < d.total) texto += ` · se muestran los ${entradas.length} más recientes`;
    if (d.descartados) texto += ` · ${d.descartados} descartado${d.descartados === 1 ? "" : "s"} por el límite`;
    resumen.textContent = texto;
    const lista = document.getElementById("entradas");
    const items = entradas.map(entrada);
    if (!items.length) items.push(el("li", "vacio", "La cuarentena está vacía."));
    lista.replaceChildren(...items);
    refrescarHaces();
    document.body.dataset.listo = "si";
  }

  /** The raw message, indented when it is JSON. */
  function mensajeLegible(crudo) {
    if (crudo == null) return "";
    try { return JSON.stringify(JSON.parse(crudo), null, 2); } catch (_) { return String(crudo); }
  }

  function entrada(e) {
    const li = el("li", "entrada");
    li.dataset.entrada = e.id;
    li.dataset.tareaId = e.tarea_id || "";
    const cabecera = el("div", "cabecera");
    const titulo = el("div");
    titulo.append(el("span", "motivo-entrada", e.motivo || "(sin motivo)"));
    const boton = el("button", "boton primario", "Reencolar");
    boton.type = "button";
    boton.dataset.rol = "reencolar";
    boton.setAttribute("aria-label", `Reencolar en ${e.lista || "su lista"} el mensaje ${e.tarea_id || e.id}`);
    cabecera.append(titulo, boton);

    const ficha = el("dl", "ficha");
    const fila = (campo, t, v) => {
      const dd = el("dd");
      dd.dataset.campo = campo;
      if (v instanceof Node) dd.append(v); else dd.textContent = v == null || v === "" ? "—" : String(v);
      ficha.append(el("dt", null, t), dd);
    };
    fila("tarea", "Tarea", e.tarea);
    fila("tarea_id", "Id de tarea", e.tarea_id ? enlaceTarea(e.tarea_id) : null);
    fila("lista", "Lista", e.lista == null ? null : el("span", "mono", e.lista));
    fila("consumidor", "Consumidor", e.consumidor == null ? null : el("span", "mono", e.consumidor));
    fila("en_cuarentena", "En cuarentena", e.en_cuarentena == null ? null : celdaHora(e.en_cuarentena));

    const crudo = el("details");
    const largo = e.mensaje == null ? 0 : new TextEncoder().encode(e.mensaje).length;
    const cortado = e.mensaje_cortado ? ", cortado a 4" + NBSP + "KiB" : "";
    crudo.append(el("summary", null, `Mensaje en bruto (${largo.toLocaleString("es-ES")}${NBSP}bytes${cortado})`),
      bloque(mensajeLegible(e.mensaje)));
    crudo.dataset.rol = "mensaje";

    const respuesta = el("p", "mensaje respuesta");
    respuesta.dataset.rol = "respuesta";
    respuesta.setAttribute("role", "status");
    respuesta.hidden = true;

    boton.addEventListener("click", () => reencolar(e, li, boton, respuesta));
    li.append(cabecera, ficha, crudo, respuesta);
    return li;
  }

  async function reencolar(e, li, boton, respuesta) {
    boton.disabled = true;
    mostrar(respuesta, "Reencolando…", "aviso");
    const r = await pedir(`/monitor/cuarentena/${encodeURIComponent(e.id)}/reencolar`, { method: "POST" });
    const codigo = r.cuerpo && r.cuerpo.error;
    if (r.status === 200 && r.cuerpo && r.cuerpo.reencolada) {
      li.dataset.reencolada = "si";
      boton.textContent = "Reencolada";
      mostrar(respuesta, `Reencolada: vuelve a la lista «${r.cuerpo.lista}» y la tomará un worker. ` +
        "Actualiza para ver la cuarentena sin ella.", "ok", "reencolada");
      return;
    }
    boton.disabled = false;
    if (r.status === 403 && codigo === "reencolado_deshabilitado") {
      mostrar(respuesta, "Reencolar necesita MONITOR_TOKEN: es una escritura, y el monitor solo la " +
        "permite con autenticación. Arranca monitor-service con MONITOR_TOKEN y entra por /?token=<token>. " +
        `(${textoError(r)})`, "aviso", codigo);
    } else if (r.status === 404) {
      mostrar(respuesta, `Ya no está en cuarentena: ${textoError(r)}`, "aviso", codigo);
    } else {
      mostrar(respuesta, `No se pudo reencolar: ${textoError(r)}`, "error", codigo);
    }
  }

  function iniciarCuarentena() {
    document.getElementById("actualizar").addEventListener("click", () => {
      document.body.dataset.listo = "no";
      cargarCuarentena();
    });
    cargarCuarentena();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const pagina = document.body.dataset.pagina;
    if (pagina === "tarea") iniciarTarea();
    else if (pagina === "cuarentena") iniciarCuarentena();
    setInterval(refrescarHaces, 1000);
  });
})();
