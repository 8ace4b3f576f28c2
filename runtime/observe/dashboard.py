"""The dashboard page: one HTML document with its style and script inline (no CDN, no fetch
besides `/events`), locked down by a Content-Security-Policy built from their hashes."""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root { color-scheme: dark; --bg:#0f1419; --panel:#161c23; --line:#242c36; --fg:#d6dde6;
  --dim:#7d8b99; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --cpu:#58a6ff; --mem:#bc8cff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
header { display:flex; gap:18px; align-items:center; padding:12px 20px;
  border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { font-size:17px; margin:0; letter-spacing:.5px; }
header .meta { color:var(--dim); font-variant-numeric:tabular-nums; }
.badge { padding:2px 10px; border-radius:10px; font-weight:600; font-size:12px;
  text-transform:uppercase; background:var(--line); }
.badge.ok { background:#12351d; color:var(--ok); }
.badge.bad { background:#3d1414; color:var(--bad); }
.badge.warn { background:#3a2d0c; color:var(--warn); }
#conn { margin-left:auto; color:var(--dim); font-size:12px; }
#conn::before { content:"\\25CF "; color:var(--bad); }
#conn.live::before { color:var(--ok); }
main { padding:16px 20px; display:grid; gap:16px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px; }
section h2 { font-size:13px; margin:0; padding:10px 14px; color:var(--dim);
  text-transform:uppercase; letter-spacing:1px; border-bottom:1px solid var(--line);
  display:flex; gap:12px; align-items:center; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:6px 14px; border-bottom:1px solid var(--line);
  white-space:nowrap; }
th { color:var(--dim); font-weight:500; font-size:12px; }
tr:last-child td { border-bottom:0; }
td.num { text-align:right; }
.st { font-weight:600; }
.st.online { color:var(--ok); } .st.errored { color:var(--bad); }
.st.launching, .st.waiting, .st.stopping { color:var(--warn); } .st.stopped { color:var(--dim); }
.metric { display:flex; align-items:center; gap:8px; }
.metric span { min-width:64px; text-align:right; }
svg.spark { width:120px; height:26px; background:#0c1116; border-radius:3px; }
svg.spark polyline { fill:none; stroke-width:1.5; }
svg.spark .cpu { stroke:var(--cpu); } svg.spark .mem { stroke:var(--mem); }
svg.spark .sat { stroke:var(--warn); }
td.waiting { color:var(--warn); font-weight:600; }
#logs { height:320px; overflow:auto; margin:0; padding:8px 14px;
  font:12px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
#logs div { white-space:pre-wrap; word-break:break-all; }
#logs .ts { color:var(--dim); } #logs .src { color:var(--cpu); }
#logs .stderr .msg { color:var(--bad); }
select, label { font:inherit; font-size:12px; color:var(--fg); text-transform:none;
  letter-spacing:0; }
select { background:var(--bg); border:1px solid var(--line); border-radius:4px; }
.empty { color:var(--dim); padding:14px; }
"""

SCRIPT = """
"use strict";
const HISTORY = 60, MAX_LOG_LINES = 600;
const token = new URLSearchParams(location.search).get("token");
const series = new Map(), saturation = new Map();
let logFilter = "", snapshots = 0;

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
function spark(values, max, cls) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 26");
  svg.setAttribute("preserveAspectRatio", "none");
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
function remember(p) {
  let s = series.get(p.id);
  if (!s) { s = { cpu: [], mem: [] }; series.set(p.id, s); }
  s.cpu.push(p.cpu_percent || 0); s.mem.push(p.memory_bytes || 0);
  if (s.cpu.length > HISTORY) { s.cpu.shift(); s.mem.shift(); }
  return s;
}
function dash(v) { return v === null || v === undefined ? "-" : String(v); }
function renderApps(apps) {
  const body = document.getElementById("apps");
  const rows = apps.map((a) => {
    let h = saturation.get(a.name);
    if (!h) { h = []; saturation.set(a.name, h); }
    h.push(a.load.saturation); if (h.length > HISTORY) h.shift();
    const waiting = a.load.queues.reduce((n, q) => n + (q.backlog || 0), 0);
    const size = a.autoscale ? a.instances + " (" + a.autoscale.min + "\u2013" +
      a.autoscale.max + " auto)" : String(a.instances);
    const tr = el("tr", { "data-name": a.name, "data-waiting": waiting,
                          "data-saturation": a.load.saturation });
    const sat = el("td"), box = el("div", { class: "metric" });
    box.append(spark(h, 1, "sat"), el("span", {}, Math.round(a.load.saturation * 100) + " %"));
    sat.append(box);
    tr.append(el("td", {}, a.name), el("td", {}, a.exec_mode), el("td", {}, size),
      el("td", { class: "st " + (a.health === "ok" ? "online" : "waiting") }, a.health),
      el("td", { class: "num" + (waiting ? " waiting" : "") },
        a.load.queues.length ? String(waiting) : "-"), sat);
    return tr;
  });
  body.replaceChildren(...rows);
  const live = new Set(apps.map((a) => a.name));
  for (const name of saturation.keys()) if (!live.has(name)) saturation.delete(name);
}
function renderHeader(rt) {
  document.getElementById("version").textContent = "v" + rt.version;
  document.getElementById("meta").textContent =
    "pid " + rt.pid + " \\u00b7 up " + uptime(rt.uptime_s);
  const badge = document.getElementById("health");
  badge.textContent = rt.health;
  badge.className = "badge " + (rt.health === "ok" ? "ok" :
    (rt.health === "starting" || rt.health === "reloading") ? "warn" : "bad");
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
      el("td", { class: "num" }, dash(p.connections)));
    const cpu = el("td"), mem = el("td");
    const cpuBox = el("div", { class: "metric" }), memBox = el("div", { class: "metric" });
    cpuBox.append(spark(s.cpu, Math.max(5, ...s.cpu) * 1.2, "cpu"),
      el("span", {}, p.cpu_percent === null ? "-" : p.cpu_percent.toFixed(1) + " %"));
    memBox.append(spark(s.mem, Math.max(...s.mem) * 1.15, "mem"),
      el("span", {}, bytes(p.memory_bytes)));
    cpu.append(cpuBox); mem.append(memBox);
    tr.append(cpu, mem);
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("noprocs").hidden = rows.length > 0;
  const live = new Set(procs.map((p) => p.id));
  for (const id of series.keys()) if (!live.has(id)) series.delete(id);
}
function renderFilter(apps) {
  const select = document.getElementById("app");
  const names = ["", ...apps.map((a) => a.name)];
  const have = [...select.options].map((o) => o.value);
  if (names.join("\\n") === have.join("\\n")) return;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n || "all apps")));
  select.value = names.includes(logFilter) ? logFilter : "";
}
function addLogs(records) {
  const box = document.getElementById("logs");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  for (const r of records) {
    const line = el("div", { class: r.stream, "data-app": r.app });
    line.hidden = logFilter !== "" && r.app !== logFilter;
    line.append(el("span", { class: "ts" }, (r.timestamp || "").slice(11, 23) + " "),
      el("span", { class: "src" }, r.app + "#" + r.instance + " "),
      el("span", { class: "msg" }, r.message));
    box.appendChild(line);
  }
  while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}
function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
  es.onopen = () => { conn.className = "live"; conn.textContent = "live"; };
  es.onerror = () => { conn.className = ""; conn.textContent = "reconnecting"; };
  es.addEventListener("status", (e) => {
    const snap = JSON.parse(e.data);
    renderHeader(snap.runtime); renderApps(snap.apps); renderTable(snap.processes);
    renderFilter(snap.apps);
    document.body.dataset.snapshots = String(++snapshots);
  });
  es.addEventListener("logs", (e) => addLogs(JSON.parse(e.data)));
}
document.getElementById("app").addEventListener("change", (e) => {
  logFilter = e.target.value;
  for (const line of document.getElementById("logs").children)
    line.hidden = logFilter !== "" && line.dataset.app !== logFilter;
});
connect();
"""

BODY = """<header>
  <h1>runtime</h1><span class="meta" id="version"></span>
  <span class="badge" id="health">&hellip;</span><span class="meta" id="meta"></span>
  <span id="conn">connecting</span>
</header>
<main>
  <section>
    <h2>Apps</h2>
    <table>
      <thead><tr><th>name</th><th>mode</th><th>instances</th><th>health</th>
      <th title="connections waiting in the accept queue for a worker">waiting</th>
      <th title="share of the last 10 s with connections waiting">saturation</th></tr></thead>
      <tbody id="apps"></tbody>
    </table>
  </section>
  <section>
    <h2>Processes</h2>
    <table>
      <thead><tr><th>id</th><th>name</th><th>mode</th><th>inst</th><th>pid</th><th>status</th>
      <th>ready</th><th>uptime</th><th>&#8634;</th>
      <th title="connections waiting in this worker's accept queue">queue</th>
      <th title="connections this worker holds">conns</th><th>cpu</th><th>memory</th></tr></thead>
      <tbody id="procs"></tbody>
    </table>
    <div class="empty" id="noprocs">no processes yet</div>
  </section>
  <section>
    <h2>Logs <select id="app"><option value="">all apps</option></select></h2>
    <div id="logs"></div>
  </section>
</main>"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<link rel="icon" href="data:,"><title>runtime</title>'
    f"<style>{STYLE}</style></head>\n<body>\n{BODY}\n<script>{SCRIPT}</script>\n</body></html>\n"
).encode()
