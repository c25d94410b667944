// The ssehub viewer: subscribes with EventSource exactly as any page would, and shows what comes.
// No build step, no dependencies. Rendering is batched per animation frame and the list is bounded,
// so a busy stream cannot freeze the tab or eat its memory.
"use strict";

const MAX_ROWS = 5000;
const params = new URLSearchParams(location.search);
const topics = params.getAll("topic").filter((t) => t !== "");
if (topics.length === 0) topics.push("default");
// EventSource has no wildcard: named events beyond these need ?event=NAME on the page's URL.
const names = ["status", "upstream", ...params.getAll("event").filter((n) => n && n !== "message" && n !== "gap" && n !== "status" && n !== "upstream")];
// The newest events shown on open, like `tail -n` (?tail=N on the page; 100 by default).
const tailParam = Number.parseInt(params.get("tail") ?? "", 10);
const tail = Number.isFinite(tailParam) && tailParam >= 0 ? tailParam : 100;

const $ = (id) => document.getElementById(id);
const view = {
  state: $("state"), count: $("count"), rate: $("rate"), rows: $("rows"), body: $("events"),
  scroller: $("scroller"), following: $("following"), filter: $("filter"), pause: $("pause"),
  clear: $("clear"), statusData: $("status-data"), statusTime: $("status-time"),
};

let total = 0;          // events received (shown or not)
let lastTotal = 0;      // for events/s
let pending = [];       // records waiting for the next animation frame
let frameAsked = false;
let paused = false;
let follow = true;      // keep the newest row in view, until the user scrolls up
const seen = new Map(); // event id -> record, to show an event on several topics once

// ---- connections: one EventSource per topic (an event does not say its topic on the wire) ----

const sources = new Map(); // topic -> { es, state, lastId, backoff, retryAt }

function streamUrl(topic, lastId) {
  let url = "/events?topic=" + encodeURIComponent(topic);
  // A reconnect resumes after the last event seen; a first open shows the newest `tail`.
  if (lastId) url += "&lastEventId=" + encodeURIComponent(lastId);
  else if (tail > 0) url += "&tail=" + tail;
  return url;
}

function connect(topic) {
  const s = sources.get(topic) || { state: "connecting", lastId: "", backoff: 1000 };
  sources.set(topic, s);
  setState(topic, s.lastId ? "reconnecting" : "connecting");
  const es = new EventSource(streamUrl(topic, s.lastId));
  s.es = es;
  es.onopen = () => { s.backoff = 1000; setState(topic, "live"); };
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      // A native EventSource gives up for good on a 503: find out why, then come back.
      comeBack(topic);
    } else {
      setState(topic, "reconnecting"); // the browser retries by itself (retry: from the hub)
    }
  };
  es.onmessage = (e) => receive(topic, "message", e);
  for (const name of names) es.addEventListener(name, (e) => receive(topic, name, e));
  es.addEventListener("gap", (e) => gap(topic, e));
}

async function comeBack(topic) {
  const s = sources.get(topic);
  let wait = s.backoff + Math.random() * 250;
  s.backoff = Math.min(s.backoff * 2, 30000);
  let busy = false;
  try {
    const ctrl = new AbortController();
    const answer = await fetch(streamUrl(topic), { signal: ctrl.signal, headers: { accept: "text/event-stream" } });
    ctrl.abort();
    if (answer.status === 503) {
      busy = true;
      const after = parseInt(answer.headers.get("retry-after") || "", 10);
      if (after > 0) wait = after * 1000 + Math.random() * 250; // the hub says when
    }
  } catch (_) { /* the hub is unreachable: plain backoff */ }
  s.retryAt = Date.now() + wait;
  setState(topic, busy ? "busy" : "reconnecting");
  setTimeout(() => connect(topic), wait);
}

function setState(topic, state) {
  sources.get(topic).state = state;
  showState();
}

function showState() {
  // The page is as well as its worst stream.
  const order = ["busy", "reconnecting", "connecting", "live"];
  let worst = "live";
  let retryAt = 0;
  for (const s of sources.values()) {
    if (order.indexOf(s.state) < order.indexOf(worst)) worst = s.state;
    if (s.state === "busy") retryAt = Math.max(retryAt, s.retryAt || 0);
  }
  const text = {
    live: "live",
    connecting: "connecting…",
    reconnecting: "reconnecting…",
    busy: "hub busy, retrying" + (retryAt ? " in " + Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) + " s" : ""),
  }[worst];
  view.state.dataset.state = worst;
  if (view.state.textContent !== text) view.state.textContent = text;
}

// ---- events ----

function receive(topic, name, e) {
  chartCount(topic);
  const s = sources.get(topic);
  if (e.lastEventId) s.lastId = e.lastEventId;
  const earlier = e.lastEventId && seen.get(e.lastEventId);
  if (earlier) {
    // The same event on another of our topics: one row, both topics.
    earlier.topics.push(topic);
    if (earlier.cell) earlier.cell.textContent = earlier.topics.join(", ");
    return;
  }
  total += 1;
  const record = { time: new Date(), topics: [topic], name, id: e.lastEventId, data: e.data, kind: name === "status" ? "status" : "event" };
  if (record.id) seen.set(record.id, record);
  if (name === "status") showStatus(e.data, record.time);
  if (name === "upstream") showUpstream(topic, e.data);
  enqueue(record);
}

function gap(topic, e) {
  let text = e.data;
  try {
    const info = JSON.parse(e.data);
    text = "gap (" + info.reason + "): " + (info.message || "events were lost");
  } catch (_) { /* show the data as it is */ }
  enqueue({ time: new Date(), topics: [topic], name: "gap", id: "", data: text, kind: "gap" });
}

function showStatus(data, time) {
  let text = data;
  try { text = JSON.stringify(JSON.parse(data), null, 2); } catch (_) { /* not JSON: as it is */ }
  view.statusData.textContent = text;
  view.statusTime.textContent = "at " + clock(time);
}

function enqueue(record) {
  pending.push(record);
  // Only the newest MAX_ROWS could ever be shown: drop the rest before they cost anything.
  if (pending.length > MAX_ROWS * 2) {
    for (const r of pending.splice(0, pending.length - MAX_ROWS)) if (r.id) seen.delete(r.id);
  }
  askFrame();
}

function askFrame() {
  if (!frameAsked && !paused) {
    frameAsked = true;
    requestAnimationFrame(render);
  }
}

// ---- rendering: one DOM update per frame ----

function clock(t) {
  return t.toLocaleTimeString([], { hour12: false }) + "." + String(t.getMilliseconds()).padStart(3, "0");
}

function row(r) {
  const tr = document.createElement("tr");
  tr.className = r.kind;
  for (const [cls, text] of [["time", clock(r.time)], ["topic", r.topics.join(", ")], ["name", r.name], ["id", r.id], ["data", r.data]]) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    tr.append(td);
    if (cls === "topic") r.cell = td;
  }
  tr.hidden = !matches(tr);
  tr.record = r;
  return tr;
}

function render() {
  frameAsked = false;
  if (paused) return;
  let batch = pending;
  pending = [];
  if (batch.length > MAX_ROWS) {
    for (const r of batch.splice(0, batch.length - MAX_ROWS)) if (r.id) seen.delete(r.id);
  }
  if (batch.length > 0) {
    const fragment = document.createDocumentFragment();
    for (const r of batch) fragment.append(row(r));
    view.body.append(fragment);
    let extra = view.body.rows.length - MAX_ROWS;
    while (extra-- > 0) {
      const old = view.body.firstElementChild;
      if (old.record && old.record.id) seen.delete(old.record.id);
      old.remove();
    }
    if (follow) view.scroller.scrollTop = view.scroller.scrollHeight;
  }
  showCounts();
}

function showCounts() {
  view.count.textContent = String(total);
  view.rows.textContent = String(view.body.rows.length);
}

// ---- the events/s chart: the last minute, one line per topic when several are shown ----
// An event only adds 1 to its topic's counter; the chart is drawn once a second from the
// counters, so a busy stream costs it nothing more. No library: a canvas and a few lines.

const CHART_SECONDS = 60;
const CHART_COLORS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9", "#e69f00", "#000000"];
const chart = {
  canvas: $("rate-chart"),
  legend: $("chart-legend"),
  counts: new Map(), // topic -> events since the last tick (an event on two topics counts on both)
  series: new Map(), // topic -> events/s, one a second, oldest first, at most CHART_SECONDS
};

function chartCount(topic) {
  chart.counts.set(topic, (chart.counts.get(topic) || 0) + 1);
}

function chartTick() {
  for (const t of topics) {
    const values = chart.series.get(t) || [];
    values.push(chart.counts.get(t) || 0);
    if (values.length > CHART_SECONDS) values.shift();
    chart.series.set(t, values);
  }
  chart.counts.clear();
  const now = topics.map((t) => t + " " + chart.series.get(t).at(-1)).join(", ");
  chart.canvas.setAttribute("aria-label", "Events per second over the last minute; the last second: " + now);
  drawChart();
}

// 1, 2 or 5 times a power of ten, at or above `v`: round numbers on the axis.
function chartScale(v) {
  const p = 10 ** Math.floor(Math.log10(Math.max(v, 1)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= v);
}

function drawChart() {
  const c = chart.canvas;
  const ratio = window.devicePixelRatio || 1;
  const w = c.clientWidth;
  const h = c.clientHeight;
  if (w === 0 || h === 0) return;
  if (c.width !== Math.round(w * ratio)) c.width = Math.round(w * ratio);
  if (c.height !== Math.round(h * ratio)) c.height = Math.round(h * ratio);
  const g = c.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const [left, right, top, bottom] = [52, 12, 10, 22];
  const pw = w - left - right;
  const ph = h - top - bottom;
  let most = 1;
  for (const values of chart.series.values()) for (const v of values) most = Math.max(most, v);
  const scale = chartScale(most);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#4a4a4a";
  g.strokeStyle = "#d0d4da";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (const f of [0, 0.5, 1]) {
    const y = Math.round(top + ph - f * ph) + 0.5;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(left + pw, y);
    g.stroke();
    g.fillText(String(scale * f), left - 6, y);
  }
  g.textBaseline = "top";
  for (const [ago, align] of [[CHART_SECONDS, "left"], [CHART_SECONDS / 2, "center"], [0, "right"]]) {
    g.textAlign = align;
    g.fillText(ago === 0 ? "now" : "-" + ago + " s", left + pw * (1 - ago / CHART_SECONDS), top + ph + 5);
  }
  g.lineWidth = 2;
  g.lineJoin = "round";
  let i = 0;
  for (const values of chart.series.values()) {
    g.strokeStyle = CHART_COLORS[i++ % CHART_COLORS.length];
    g.beginPath();
    values.forEach((v, k) => {
      const x = left + pw * (1 - (values.length - 1 - k) / CHART_SECONDS);
      const y = top + ph - (v / scale) * ph;
      if (k === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  }
}

(function chartLegend() {
  if (topics.length === 1) {
    chart.legend.textContent = "Events per second on " + topics[0] + ", one point a second.";
    return;
  }
  chart.legend.append("One line per topic:");
  topics.forEach((t, i) => {
    const key = document.createElement("span");
    key.className = "key";
    key.style.background = CHART_COLORS[i % CHART_COLORS.length];
    chart.legend.append(key, t);
  });
})();

drawChart();
setInterval(chartTick, 1000);
window.addEventListener("resize", drawChart);

// ---- controls ----

function matches(tr) {
  const q = view.filter.value.trim().toLowerCase();
  return q === "" || tr.textContent.toLowerCase().includes(q);
}

view.filter.addEventListener("input", () => {
  for (const tr of view.body.rows) tr.hidden = !matches(tr);
});

view.pause.addEventListener("click", () => {
  paused = !paused;
  view.pause.setAttribute("aria-pressed", String(paused));
  view.pause.textContent = paused ? "Resume" : "Pause";
  if (!paused) askFrame();
});

view.clear.addEventListener("click", () => {
  view.body.textContent = "";
  pending = [];
  seen.clear();
  showCounts();
});

view.scroller.addEventListener("scroll", () => {
  const el = view.scroller;
  follow = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
  view.following.textContent = follow ? "Following new events." : "Scrolled up: not following. Scroll to the bottom to follow again.";
});

// Counters and the busy countdown keep moving even while paused or with no events.
setInterval(() => {
  view.rate.textContent = String(total - lastTotal);
  lastTotal = total;
  showCounts();
  showState();
}, 1000);

// ---- the publishing help, for this hub's own address ----

const topic = topics[0];
const q = (s) => "'" + s.replace(/'/g, "'\\''") + "'";
$("topics").textContent = topics.join(", ");
// On the hub's own host, its loopback publish listener takes publishes without a token; this
// page's own address (perhaps behind a proxy) wants the token.
const publishListener = document.querySelector('meta[name="ssehub-publish-listener"]').content;
const publishBase = publishListener.startsWith("http") ? publishListener : location.origin;
const auth = publishBase === location.origin ? " -H 'authorization: Bearer TOKEN'" : "";
if (!auth) $("publish-where").textContent = "From a terminal on the hub's host (its publish listener, " + publishBase + ", takes no token; elsewhere, publish to " + location.origin + " with the hub's token):";
$("open-tail").value = String(tail);
$("curl-raw").textContent = "curl -X POST " + q(publishBase + "/publish?topic=" + encodeURIComponent(topic)) + auth + " --data-binary 'hello'";
$("curl-status").textContent = "curl -X POST " + q(publishBase + "/publish?topic=" + encodeURIComponent(topic) + "&event=status") + auth + " --data-binary '{\"up\": true}'";
$("curl-json").textContent = "curl -X POST " + publishBase + "/publish" + auth + " -H 'content-type: application/json' \\\n  -d " +
  q(JSON.stringify([{ topic, data: "one" }, { topic, event: "status", data: { up: true } }]));
$("js-listen").textContent =
  "const source = new EventSource(" + JSON.stringify("/events?topic=" + encodeURIComponent(topic)) + ");\n" +
  "source.onmessage = (e) => console.log(e.lastEventId, e.data);\n" +
  "source.addEventListener(\"status\", (e) => console.log(\"status\", e.data));";

for (const t of topics) connect(t);

// ---- the relay's state (`--upstream`): its `upstream` events, one line per topic ----

const upstreams = new Map(); // topic -> text
function showUpstream(topic, data) {
  let text = data;
  try {
    const u = JSON.parse(data);
    text = u.url + (u.connected ? " connected" : " down" + (u.error ? " (" + u.error + ")" : "")) +
      ", " + u.reconnects + " reconnects, " + u.events + " events relayed";
  } catch (_) { /* not JSON: as it is */ }
  upstreams.set(topic, topic + ": " + text);
  $("upstream").textContent = [...upstreams.values()].join("; ");
  $("upstream-line").hidden = false;
}
