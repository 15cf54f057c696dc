// The annal console: reads the server's own routes (/ready, /subscribe, /streams, /orders,
// /projections, /metrics) with the key given in the page, and draws what they say. No library, no
// build step: this file is served as it is.
"use strict";

const kFeedRows = 200;      // rows the live feed keeps
const kPollMs = 2000;       // /metrics and /projections
const kChartPoints = 90;    // three minutes at kPollMs

const $ = (id) => document.getElementById(id);

// The key, kept for this tab only.
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("annal-token") || "";
tokenInput.addEventListener("change", () => {
  sessionStorage.setItem("annal-token", tokenInput.value.trim());
  restartFeed();
});
function headers() {
  const token = tokenInput.value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function getJson(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.text();
  let json = null;
  try { json = JSON.parse(body); } catch (_) { /* not JSON: reported below */ }
  if (!response.ok) throw new Error(response.status + " " + (json && json.detail ? json.detail : body.slice(0, 200)));
  return json;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// A row of `texts`, then the event's data in a cell of its own; at the end, or at `at`.
function addRow(body, texts, data, at = -1) {
  const row = body.insertRow(at);
  for (const text of texts) cell(row, text);
  cell(row, data, "data");
  return row;
}

function dataOf(event) {
  if ("data" in event) return JSON.stringify(event.data);
  if ("data_base64" in event) return "base64:" + event.data_base64;
  return "";
}

function timeOf(ns) { return ns ? new Date(Number(ns) / 1e6).toISOString().replace("T", " ").slice(0, 23) : ""; }

// --- Live feed: GET /subscribe read as a stream (fetch, so that the key can go in a header).
let feedAbort = null;
let lastSeen = 0;

function addToFeed(event) {
  const body = $("feed").tBodies[0];
  const row = addRow(body, [event.sequence, event.stream, event.version, event.type], dataOf(event), 0);
  row.className = "new";
  row.dataset.sequence = event.sequence;
  setTimeout(() => row.classList.remove("new"), 1500);
  while (body.rows.length > kFeedRows) body.deleteRow(body.rows.length - 1);
}

async function follow(from) {
  feedAbort = new AbortController();
  const signal = feedAbort.signal;
  try {
    const response = await fetch("/subscribe?from=" + from, { headers: headers(), signal });
    if (!response.ok) throw new Error(response.status + " " + (await response.text()).slice(0, 200));
    $("feed-state").textContent = "following from sequence " + from;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").find((line) => line.startsWith("data: "));
        if (!data || block.startsWith(":")) continue;
        const event = JSON.parse(data.slice(6));
        if (event.error) throw new Error(event.detail);
        lastSeen = event.sequence;
        addToFeed(event);
      }
    }
    throw new Error("the server ended the feed");
  } catch (error) {
    if (signal.aborted) return;
    $("feed-state").textContent = "(" + error.message + "; reconnecting)";
    setTimeout(() => follow(lastSeen + 1), 2000);  // from the next event: no gap, no repeat
  }
}

async function restartFeed() {
  if (feedAbort) feedAbort.abort();
  $("feed").tBodies[0].replaceChildren();
  try {
    const ready = await getJson("/ready");
    $("state").textContent = "durable sequence " + ready.durable_sequence;
    lastSeen = Math.max(0, ready.durable_sequence - 50);  // the last fifty, then live
    follow(lastSeen + 1);
  } catch (error) {
    $("state").textContent = "not ready: " + error.message;
    setTimeout(restartFeed, 2000);
  }
}

// --- Stream browser.
$("stream-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("stream-name").value.trim();
  const body = $("stream").tBodies[0];
  body.replaceChildren();
  $("stream-error").textContent = "";
  const query = $("newest-first").checked ? "?direction=backward&limit=200" : "?limit=200";
  try {
    const read = await getJson("/streams/" + encodeURIComponent(name) + query);
    for (const event of read.events) {
      addRow(body, [event.version, event.sequence, event.type, timeOf(event.timestamp_ns)], dataOf(event));
    }
  } catch (error) {
    $("stream-error").textContent = error.message;
  }
});

// --- An order: the orders service's /orders (state and history) where it is served, else the
// order's stream.
$("order-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = $("order-id").value.trim();
  const body = $("order-history").tBodies[0];
  body.replaceChildren();
  try {
    let order = null;
    try { order = await getJson("/orders?orderId=" + encodeURIComponent(id)); } catch (_) { /* not the orders service */ }
    if (order && order.events) {
      $("order-state").textContent = "status " + order.status + ", amount " + order.amount + ", paid " + order.paid +
                                     ", refunded " + order.refunded;
      for (const event of order.events) {
        const time = new Date(event.timestamp * 1000).toISOString().replace("T", " ").slice(0, 19);
        addRow(body, [event.sequence, event.eventType, time], "amount " + event.amount);
      }
      return;
    }
    const read = await getJson("/streams/order-" + encodeURIComponent(id));
    $("order-state").textContent = read.events.length + " events in stream order-" + id;
    for (const event of read.events) {
      addRow(body, [event.sequence, event.type, timeOf(event.timestamp_ns)], dataOf(event));
    }
  } catch (error) {
    $("order-state").textContent = error.message;
  }
});

// --- Projections.
async function pollProjections() {
  try {
    const status = await getJson("/projections");
    const body = $("projections").tBodies[0];
    body.replaceChildren();
    for (const p of status.projections) {
      const row = body.insertRow();
      cell(row, p.name);
      cell(row, p.applied);
      cell(row, p.lag);
      cell(row, p.live ? "live" : "journal");
      cell(row, p.snapshots_written);
      cell(row, p.restored_from);
      cell(row, p.error || "", p.error ? "error" : "");
    }
    $("projections-note").textContent = status.projections.length ? "" : "this server names no projections";
  } catch (error) {
    $("projections-note").textContent = error.message;
  }
}

// --- Rates from /metrics: the Prometheus text format, differences between two scrapes.
function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

const rates = [];
const latencies = [];
let previous = null;

function draw(canvas, points, format) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const top = Math.max(...points, 1e-9);
  context.strokeStyle = "#2f6fb2";
  context.lineWidth = 2;
  context.beginPath();
  points.forEach((value, i) => {
    const x = (i / Math.max(kChartPoints - 1, 1)) * width;
    const y = height - 4 - (value / top) * (height - 18);
    if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
  });
  context.stroke();
  context.fillStyle = "#5a6b7d";
  context.fillText("max " + format(top), 4, 12);
}

async function pollMetrics() {
  try {
    const response = await fetch("/metrics", { headers: headers() });
    if (!response.ok) throw new Error(response.status + " (metrics need an admin key)");
    const now = parseMetrics(await response.text());
    const at = performance.now();
    if (previous) {
      const seconds = (at - previous.at) / 1000;
      const appends = (now.get("annal_appends_total") - previous.values.get("annal_appends_total")) / seconds;
      const syncs = now.get("annal_fdatasync_seconds_count") - previous.values.get("annal_fdatasync_seconds_count");
      const syncTime = now.get("annal_fdatasync_seconds_sum") - previous.values.get("annal_fdatasync_seconds_sum");
      rates.push(appends);
      latencies.push(syncs > 0 ? syncTime / syncs : 0);
      if (rates.length > kChartPoints) { rates.shift(); latencies.shift(); }
      $("rate").textContent = Math.round(appends).toLocaleString();
      $("latency").textContent = syncs > 0 ? (syncTime / syncs * 1000).toFixed(2) + " ms" : "no syncs";
      draw($("rate-chart"), rates, (v) => Math.round(v).toLocaleString() + "/s");
      draw($("latency-chart"), latencies, (v) => (v * 1000).toFixed(2) + " ms");
    }
    previous = { at, values: now };
    $("totals").textContent = now.get("annal_appends_total").toLocaleString() + " appends, durable sequence " +
                              now.get("annal_durable_sequence").toLocaleString() + ", " +
                              now.get("annal_fdatasyncs_total").toLocaleString() + " fdatasyncs";
  } catch (error) {
    $("totals").textContent = error.message;
  }
}

restartFeed();
pollProjections();
pollMetrics();
setInterval(pollProjections, kPollMs);
setInterval(pollMetrics, kPollMs);
