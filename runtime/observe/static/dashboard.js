"use strict";
// The dashboard: one EventSource on `events` (history, backlog, status, logs) and the
// buttons' POSTs to `api/apps/<name>/<verb>`. No inline handlers: the page's CSP allows
// this script by its hash only.
const HISTORY = 60, MAX_LOG_LINES = 600;
const token = new URLSearchParams(location.search).get("token");
const series = new Map(), saturation = new Map();
const appRows = new Map(), actionState = new Map();
const VERB_DONE = { restart: "restarted", reload: "reloaded", stop: "stopped",
                    start: "started", scale: "scaled" };
const STATE_CLASS = { ok: "online", starting: "launching", reloading: "launching",
  "waiting restart": "waiting", degraded: "errored", down: "errored", stopped: "stopped" };
const BADGE_CLASS = { ok: "ok", starting: "warn", reloading: "warn", "waiting restart": "warn",
  draining: "warn", stopping: "warn", degraded: "bad", down: "bad" };
let logFilter = "", showEvents = true, snapshots = 0;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
}
function uptime(s) {
  s = Math.floor(s || 0);
  if (s >= 86400) return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
  if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return s + "s";
}
function dash(v) { return v === null || v === undefined ? "-" : String(v); }
function push(list, value) { list.push(value); if (list.length > HISTORY) list.shift(); }

// ----- sparklines --------------------------------------------------------------------

function spark(values, max, cls) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark " + cls);
  svg.setAttribute("viewBox", "0 0 120 26");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("data-points", String(values.length));
  const line = document.createElementNS(NS, "polyline");
  const step = 120 / (HISTORY - 1), top = max > 0 ? max : 1;
  const offset = HISTORY - values.length;
  line.setAttribute("points", values.map((v, i) =>
    ((offset + i) * step).toFixed(1) + "," + (24 - 22 * Math.min(v || 0, top) / top).toFixed(1)
  ).join(" "));
  line.setAttribute("class", cls);
  svg.appendChild(line);
  return svg;
}
function loadHistory(h) {
  // the master's last minute, before the first status: replaces what a reconnect had
  series.clear(); saturation.clear();
  for (const [id, s] of Object.entries(h.processes || {}))
    series.set(Number(id), { cpu: s.cpu.slice(-HISTORY), mem: s.memory.slice(-HISTORY) });
  for (const [name, a] of Object.entries(h.apps || {}))
    saturation.set(name, a.saturation.slice(-HISTORY));
  const longest = Math.max(0, ...[...series.values()].map((s) => s.cpu.length));
  document.body.dataset.historyPoints = String(longest);
}
function remember(p) {
  let s = series.get(p.id);
  if (!s) { s = { cpu: [], mem: [] }; series.set(p.id, s); }
  push(s.cpu, p.cpu_percent || 0); push(s.mem, p.memory_bytes || 0);
  return s;
}

// ----- header and host ---------------------------------------------------------------

function renderHeader(rt) {
  document.getElementById("version").textContent = "v" + rt.version;
  document.getElementById("meta").textContent =
    "pid " + rt.pid + " \u00b7 up " + uptime(rt.uptime_s);
  const badge = document.getElementById("health");
  const state = rt.state || rt.health;
  badge.textContent = state;
  badge.className = "badge " + (BADGE_CLASS[state] || "bad");
  badge.dataset.state = state;
}
function fact(name, value, sub) {
  const box = document.querySelector('#host [data-fact="' + name + '"]');
  box.querySelector(".value").textContent = value;
  if (sub !== undefined) box.querySelector(".sub").textContent = sub;
  return box;
}
function renderHost(h) {
  if (!h) return;
  document.getElementById("hostname").textContent = h.hostname || "";
  fact("cpus", h.cpus_usable + (h.cpus_usable === h.cpus ? "" : " of " + h.cpus) + " usable",
       h.cpus + " on the host \u00b7 " +
       (h.cpu_quota ? "cgroup quota " + h.cpu_quota : "no cgroup quota"));
  fact("load", h.load ? h.load.map((x) => x.toFixed(2)).join(" \u00b7 ") : "-");
  const total = h.memory_limit_bytes && h.memory_limit_bytes < h.memory_total_bytes
    ? h.memory_limit_bytes : h.memory_total_bytes;
  const box = fact("memory", bytes(h.memory_available_bytes) + " free",
    "of " + bytes(h.memory_total_bytes) + " \u00b7 " + (h.memory_limit_bytes
      ? "cgroup limit " + bytes(h.memory_limit_bytes) : "no cgroup limit"));
  const used = total ? Math.max(0, Math.min(1, 1 - h.memory_available_bytes / total)) : 0;
  box.querySelector(".bar div").style.width = (used * 100).toFixed(1) + "%";
  const v = h.versions || {};
  fact("versions", "runtime " + v.runtime,
       "Python " + dash(v.python) + " \u00b7 Node " + (v.node === null ? "\u2026" : dash(v.node)));
}

// ----- apps and their buttons --------------------------------------------------------

function stateOf(name) {
  let st = actionState.get(name);
  if (!st) { st = { busy: null, confirm: false, result: null }; actionState.set(name, st); }
  return st;
}
function button(verb, label, n, cls) {
  const b = el("button", { type: "button", "data-verb": verb }, label);
  if (n !== undefined) b.dataset.n = n;
  if (cls) b.className = cls;
  return b;
}
function renderActions(name) {
  const row = appRows.get(name);
  if (!row) return;
  const st = stateOf(name), cell = row.cells.actions;
  if (st.confirm) {
    cell.replaceChildren(el("span", { class: "confirm" }, "stop " + name + "?"),
      button("stop", "yes, stop", undefined, "danger confirm-yes"), button("cancel", "no"));
    return;
  }
  const buttons = [button("restart", "restart"), button("reload", "reload"),
    button("stop", "stop", undefined, "danger"), button("start", "start"),
    button("scale", "\u22121", "-1"), button("scale", "+1", "+1")];
  for (const b of buttons) b.disabled = st.busy !== null;
  const result = el("span", { class: "result" });
  if (st.busy) result.textContent = st.busy + "\u2026";
  else if (st.result) {
    result.textContent = st.result.text;
    result.className = "result " + (st.result.ok ? "ok" : "error");
    result.dataset.result = st.result.ok ? "ok" : "error";
    result.dataset.verb = st.result.verb;
  }
  cell.replaceChildren(...buttons, result);
}
async function act(name, verb, n) {
  const st = stateOf(name);
  st.busy = verb; st.confirm = false; st.result = null; renderActions(name);
  let ok = false, text;
  try {
    const url = "api/apps/" + encodeURIComponent(name) + "/" + verb +
      (n ? "?n=" + encodeURIComponent(n) : "");
    const res = await fetch(url, { method: "POST", cache: "no-store", credentials: "omit",
      headers: token ? { Authorization: "Bearer " + token } : {} });
    const body = await res.json().catch(() => ({}));
    ok = res.ok && body.ok === true;
    const count = (body.processes || []).length;
    text = ok ? VERB_DONE[verb] + (verb === "scale" ? " to " + count : "") +
      " \u00b7 " + new Date().toLocaleTimeString() : (body.error || "HTTP " + res.status);
  } catch (err) {
    text = "request failed: " + err.message;
  }
  st.busy = null; st.result = { ok, text, verb }; renderActions(name);
}
function onAppsClick(event) {
  const b = event.target.closest("button[data-verb]");
  const tr = event.target.closest("tr[data-name]");
  if (!b || !tr || b.disabled) return;
  const name = tr.dataset.name, verb = b.dataset.verb, st = stateOf(name);
  if (verb === "cancel") { st.confirm = false; renderActions(name); return; }
  if (verb === "stop" && !st.confirm) { st.confirm = true; renderActions(name); return; }
  act(name, verb, b.dataset.n);
}
function appRow(name) {
  let row = appRows.get(name);
  if (row) return row;
  const cells = { name: el("td", {}, name), mode: el("td"), size: el("td"), state: el("td"),
    waiting: el("td"), saturation: el("td"), actions: el("div", { class: "actions" }) };
  const tr = el("tr", { "data-name": name });
  const { actions, ...data } = cells;
  const last = el("td");
  last.append(actions);
  tr.append(...Object.values(data), last);
  row = { tr, cells };
  appRows.set(name, row);
  renderActions(name);
  return row;
}
function renderApps(apps) {
  for (const a of apps) {
    const { tr, cells } = appRow(a.name);
    let h = saturation.get(a.name);
    if (!h) { h = []; saturation.set(a.name, h); }
    push(h, a.load.saturation);
    const waiting = a.load.queues.reduce((n, q) => n + (q.backlog || 0), 0);
    const state = a.state || a.health;
    Object.assign(tr.dataset, { waiting, saturation: a.load.saturation, state,
                                instances: a.instances });
    cells.mode.textContent = a.exec_mode;
    cells.size.textContent = a.autoscale ? a.instances + " (" + a.autoscale.min + "\u2013" +
      a.autoscale.max + " auto)" : String(a.instances);
    cells.state.textContent = state;
    cells.state.className = "st " + (STATE_CLASS[state] || "errored");
    cells.waiting.textContent = a.load.queues.length ? String(waiting) : "-";
    cells.waiting.className = "num" + (waiting ? " waiting" : "");
    const box = el("div", { class: "metric" });
    box.append(spark(h, 1, "sat"), el("span", {}, Math.round(a.load.saturation * 100) + " %"));
    cells.saturation.replaceChildren(box);
  }
  const names = apps.map((a) => a.name);
  for (const name of [...appRows.keys()]) {
    if (!names.includes(name)) { appRows.delete(name); actionState.delete(name); }
  }
  for (const name of saturation.keys()) if (!names.includes(name)) saturation.delete(name);
  const body = document.getElementById("apps");
  const shown = [...body.children].map((tr) => tr.dataset.name);
  // rows are replaced only when the list changes, so a click is never cut in half
  if (shown.join("\n") !== names.join("\n"))
    body.replaceChildren(...names.map((name) => appRows.get(name).tr));
}

// ----- processes ---------------------------------------------------------------------

const METRIC_LABELS = { active_handles: "handles", active_requests: "requests" };
const STALE_S = 5;  // a report older than this: the worker stopped reporting
function num(v) {
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : dash(v);
}
function metricsText(m) {
  // `app_metrics` (docs/metrics.md): loop delay, handles, requests, then the app's own
  const parts = [], seen = new Set(["age_s", "loop_delay_p50_ms", "loop_delay_p99_ms"]);
  if (m.loop_delay_p50_ms !== undefined || m.loop_delay_p99_ms !== undefined)
    parts.push(["loop", num(m.loop_delay_p50_ms) + " / " + num(m.loop_delay_p99_ms) + " ms"]);
  for (const [k, label] of Object.entries(METRIC_LABELS))
    if (m[k] !== undefined) { parts.push([label, num(m[k])]); seen.add(k); }
  for (const [k, v] of Object.entries(m)) if (!seen.has(k)) parts.push([k, num(v)]);
  if (typeof m.age_s === "number" && m.age_s > STALE_S)
    parts.push(["silent for", Math.round(m.age_s) + " s"]);
  return parts;
}
function metricsCell(p) {
  const td = el("td", { class: "appm" });
  const m = p.app_metrics && typeof p.app_metrics === "object" ? p.app_metrics : {};
  const parts = metricsText(m);
  td.title = parts.map(([k, v]) => k + ": " + v).join("\n");
  if (typeof m.age_s === "number" && m.age_s > STALE_S) td.classList.add("stale");
  parts.forEach(([k, v], i) => {
    if (i) td.append(" \u00b7 ");
    td.append(k + " ", el("b", {}, v));
  });
  return td;
}
function renderTable(procs) {
  const body = document.getElementById("procs");
  const rows = procs.map((p) => {
    const s = remember(p);
    const tr = el("tr", { "data-id": p.id, "data-name": p.name, "data-pid": p.pid || "",
                          "data-restarts": p.restarts, "data-status": p.status });
    tr.append(el("td", { class: "num" }, p.id), el("td", {}, p.name),
      el("td", {}, p.mode), el("td", { class: "num" }, p.instance),
      el("td", { class: "num" }, p.pid || "-"),
      el("td", { class: "st " + p.status.split(" ")[0] }, p.status),
      el("td", {}, p.ready ? "yes" : "no"), el("td", { class: "num" }, uptime(p.uptime_s)),
      el("td", { class: "num" }, p.restarts),
      el("td", { class: "num" + (p.backlog ? " waiting" : "") }, dash(p.backlog)),
      el("td", { class: "num" }, dash(p.connections)),
      el("td", { class: "num fds" }, dash(p.fds)));
    const cpu = el("td"), mem = el("td");
    const cpuBox = el("div", { class: "metric" }), memBox = el("div", { class: "metric" });
    cpuBox.append(spark(s.cpu, Math.max(5, ...s.cpu) * 1.2, "cpu"),
      el("span", {}, p.cpu_percent === null ? "-" : p.cpu_percent.toFixed(1) + " %"));
    memBox.append(spark(s.mem, Math.max(...s.mem) * 1.15, "mem"),
      el("span", {}, bytes(p.memory_bytes)));
    cpu.append(cpuBox); mem.append(memBox);
    tr.append(cpu, mem, metricsCell(p));
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("noprocs").hidden = rows.length > 0;
  const table = document.getElementById("procs-table");
  table.classList.toggle("no-fds", !procs.some((p) => p.fds !== undefined && p.fds !== null));
  table.classList.toggle("no-metrics", !procs.some((p) => p.app_metrics &&
    Object.keys(p.app_metrics).length));
  const live = new Set(procs.map((p) => p.id));
  for (const id of series.keys()) if (!live.has(id)) series.delete(id);
}

// ----- logs --------------------------------------------------------------------------

function renderFilter(apps) {
  const select = document.getElementById("app");
  const names = ["", ...apps.map((a) => a.name)];
  const have = [...select.options].map((o) => o.value);
  if (names.join("\n") === have.join("\n")) return;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n || "all apps")));
  select.value = names.includes(logFilter) ? logFilter : "";
}
const EVENT_KEYS = new Set(["timestamp", "level", "app", "instance", "event"]);
function eventText(r) {
  return Object.entries(r).filter(([k, v]) => !EVENT_KEYS.has(k) && v !== null)
    .map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
}
function logLine(r) {
  const ts = el("span", { class: "ts" }, (r.timestamp || "").slice(11, 23) + " ");
  if (r.event === undefined) {
    const line = el("div", { class: "line " + r.stream, "data-app": r.app });
    line.append(ts, el("span", { class: "src" }, r.app + "#" + r.instance + " "),
      el("span", { class: "msg" }, r.message));
    return line;
  }
  const line = el("div", { class: "event " + (r.level || "info"), "data-app": r.app || "",
                           "data-event": r.event, "data-pid": dash(r.pid) });
  line.append(ts, el("span", { class: "tag" }, "runtime"));
  if (r.app) line.append(el("span", { class: "src" },
    r.app + (r.instance === undefined || r.instance === null ? "" : "#" + r.instance) + " "));
  line.append(el("span", { class: "ev" }, r.event), el("span", { class: "msg" }, eventText(r)));
  return line;
}
function visible(line) {
  if (line.classList.contains("event") && !showEvents) return false;
  return logFilter === "" || line.dataset.app === logFilter;
}
function addLogs(records, replace) {
  const box = document.getElementById("logs");
  const atBottom = replace || box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  if (replace) box.replaceChildren();
  for (const r of records) {
    const line = logLine(r);
    line.hidden = !visible(line);
    box.appendChild(line);
  }
  while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}
function refilter() {
  for (const line of document.getElementById("logs").children) line.hidden = !visible(line);
}

// ----- the stream --------------------------------------------------------------------

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
  es.onopen = () => { conn.className = "live"; conn.textContent = "live"; };
  es.onerror = () => { conn.className = ""; conn.textContent = "reconnecting"; };
  es.addEventListener("history", (e) => loadHistory(JSON.parse(e.data)));
  es.addEventListener("backlog", (e) => addLogs(JSON.parse(e.data), true));
  es.addEventListener("logs", (e) => addLogs(JSON.parse(e.data), false));
  es.addEventListener("status", (e) => {
    const snap = JSON.parse(e.data);
    renderHeader(snap.runtime); renderHost(snap.host); renderApps(snap.apps);
    renderTable(snap.processes); renderFilter(snap.apps);
    document.body.dataset.snapshots = String(++snapshots);
  });
}
document.getElementById("apps").addEventListener("click", onAppsClick);
document.getElementById("app").addEventListener("change", (e) => {
  logFilter = e.target.value; refilter();
});
document.getElementById("show-events").addEventListener("change", (e) => {
  showEvents = e.target.checked; refilter();
});
connect();
