// The demo page's script. Plain ES module, no framework; every URL is
// relative to the page, so it works behind nginx (and under a path prefix).
import { SluiceClient, wsUrl } from "./sluice-client.js";

const $ = (id) => document.getElementById(id);
const base = location.href;

let client = null;
let user = null;
let token = null;
const jobs = new Map(); // job id -> { kind, status, done, total, terminal, row }
const latencies = []; // { t, ms, busy }
let outageStart = null;
const outages = []; // ms from losing the socket to the next welcome
const messages = []; // { seq, id, data } published to this user by a backend
// `?token_ttl=5` asks for 5-second tokens, to watch refresh at work.
const tokenTtl = Number(new URLSearchParams(location.search).get("token_ttl")) || undefined;
let tokensFetched = 0;

async function fetchToken(forUser) {
  const res = await fetch(new URL("../v1/dev/token", base), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: forUser, ttl_secs: tokenTtl }),
  });
  if (!res.ok) throw new Error(`token: HTTP ${res.status}`);
  const body = await res.json();
  token = body.token;
  tokensFetched += 1;
  return token;
}

function log(text) {
  const el = $("log");
  const line = `${new Date().toISOString().slice(11, 23)} ${text}\n`;
  el.append(line);
  while (el.childNodes.length > 400) el.removeChild(el.firstChild);
  el.scrollTop = el.scrollHeight;
}

function jobRow(id, kind) {
  let job = jobs.get(id);
  if (job) {
    if (kind && !job.kind) {
      job.kind = kind;
      job.row.cells[1].textContent = kind;
    }
    return job;
  }
  const row = document.createElement("tr");
  row.dataset.job = id;
  row.innerHTML =
    '<td class="id"></td><td></td><td class="status">queued</td>' +
    '<td><div class="bar"><div></div></div></td><td class="terminal">0</td>';
  row.cells[0].textContent = id.slice(0, 8) + "…" + id.slice(-4);
  row.cells[0].title = id;
  row.cells[1].textContent = kind || "";
  $("jobs").prepend(row);
  job = { kind: kind || "", status: "queued", done: 0, total: 0, terminal: 0, row };
  jobs.set(id, job);
  while ($("jobs").rows.length > 200) $("jobs").deleteRow(-1);
  return job;
}

function renderJob(job) {
  job.row.querySelector(".status").textContent = job.status;
  const bar = job.row.querySelector(".bar");
  bar.dataset.status = job.status;
  if (job.total > 0 && job.status !== "done") {
    bar.firstChild.style.width = `${Math.round((100 * job.done) / job.total)}%`;
  }
  job.row.querySelector(".terminal").textContent = String(job.terminal);
}

function renderStats() {
  if (!client) return;
  $("conn-stats").textContent =
    `reconnects ${client.reconnects} · duplicates dropped ${client.duplicatesDropped} · last seq ${client.lastSeq}`;
  const s = stats();
  $("summary").textContent = `${s.jobs} jobs · ${s.ended} ended · ${s.terminalEvents} terminal events`;
}

function onEvent(event) {
  const job = jobRow(event.job_id);
  if (event.status === "progress") {
    if (event.progress) {
      job.done = event.progress.done;
      job.total = event.progress.total;
    }
    if (job.status === "queued") job.status = "running";
  } else {
    job.status = event.status;
    if (event.status === "done" || event.status === "failed" || event.status === "cancelled") {
      job.terminal += 1;
    }
  }
  renderJob(job);
  renderStats();
  const extra = event.progress
    ? ` ${event.progress.done}/${event.progress.total}`
    : event.result
      ? ` ${JSON.stringify(event.result)}`
      : event.error
        ? ` ${event.error.code}: ${event.error.message}`
        : "";
  log(`event seq ${event.seq} …${event.job_id.slice(-6)} ${event.status}${extra}`);
}

// After `resumed: false`: what we missed is gone from the log, so re-read
// the jobs over HTTP and show their current states.
async function rereadJobs() {
  $("gap").style.display = "block";
  try {
    const res = await fetch(new URL("../v1/jobs?limit=200", base), {
      headers: { authorization: `Bearer ${token}` },
    });
    const body = await res.json();
    for (const j of body.jobs || []) {
      const job = jobRow(j.id, j.kind);
      job.status = j.status;
      renderJob(job);
    }
    log(`re-read ${(body.jobs || []).length} jobs over HTTP`);
  } catch (e) {
    log(`re-reading jobs failed: ${e}`);
  }
}

// The deployment's kinds, listed with their args schemas; the form submits
// any of them with the JSON typed into it.
let kinds = [];

async function loadKinds() {
  try {
    const res = await fetch(new URL("../v1/kinds", base), {
      headers: { authorization: `Bearer ${token}` },
    });
    kinds = (await res.json()).kinds || [];
  } catch (e) {
    log(`reading the kinds failed: ${e}`);
    return;
  }
  const select = $("kind");
  select.replaceChildren(
    ...kinds.map((k) => {
      const option = document.createElement("option");
      option.value = k.name;
      option.textContent = k.name;
      return option;
    }),
  );
  select.disabled = kinds.length === 0;
  describeKind();
  log(`kinds: ${kinds.map((k) => k.name).join(", ")}`);
}

function describeKind() {
  const kind = kinds.find((k) => k.name === $("kind").value);
  if (!kind) return;
  const props = Object.keys(kind.args_schema.properties || {});
  $("kind-about").textContent = `${kind.description} Args: ${props.join(", ") || "none"}; limit ${kind.timeout_ms} ms.`;
}

$("kind").addEventListener("change", describeKind);

$("any").addEventListener("submit", (e) => {
  e.preventDefault();
  let args;
  try {
    args = JSON.parse($("kind-args").value);
  } catch (err) {
    log(`args are not JSON: ${err.message}`);
    return;
  }
  void submit({ kind: $("kind").value, args }).catch(() => {});
});

function signIn(forUser) {
  if (client) client.close();
  user = forUser;
  client = new SluiceClient({
    url: wsUrl("../v1/ws", base),
    token: () => fetchToken(user),
    backoff: { baseMs: 200, maxMs: 5000 },
    onEvent,
    onMessage: (m) => {
      messages.push({ seq: m.seq, id: m.id, data: m.data });
      log(`message seq ${m.seq} ${JSON.stringify(m.data)}`);
      renderStats();
    },
    onGap: (gap) => {
      log(`gap: could not resume after seq ${gap.after}; server is at ${gap.lastSeq}`);
      void rereadJobs();
    },
    onError: (e) => {
      log(`error ${e.code}${e.closeCode ? ` (${e.closeCode})` : ""}: ${e.message}`);
      if (e.code === "closed") $("error").textContent = `Stopped: ${e.message}`;
    },
    onWelcome: (w) => {
      $("whoami").textContent = `as ${w.user}`;
      log(`welcome session ${w.session.slice(0, 8)} resumed=${w.resumed} last_seq=${w.last_seq}`);
      if (outageStart !== null) {
        const ms = performance.now() - outageStart;
        outages.push(ms);
        outageStart = null;
        $("outage").textContent = `last reconnect and resume: ${ms.toFixed(0)} ms`;
        log(`reconnected and resumed in ${ms.toFixed(0)} ms`);
      }
    },
  });
  let wasOpen = false;
  client.subscribe((state) => {
    $("state").textContent = state;
    $("state").dataset.state = state;
    const open = state === "open";
    $("batch-btn").disabled = !open;
    $("sleep-btn").disabled = !open;
    $("any-btn").disabled = !open;
    if (open && kinds.length === 0) void loadKinds();
    if (wasOpen && !open && state !== "stopped") {
      outageStart = performance.now();
      log(`connection lost; reconnecting`);
    }
    wasOpen = open;
    renderStats();
  });
  client.connect();
}

async function submit(job) {
  try {
    const id = await client.submit(job);
    const row = jobRow(id, job.kind);
    renderJob(row);
    renderStats();
    log(`accepted ${job.kind} …${id.slice(-6)}`);
    return id;
  } catch (e) {
    log(`submit ${job.kind} refused: ${e.code}: ${e.message}`);
    throw e;
  }
}

function batchJob(rows, firstId) {
  const stamp = new Date().toISOString();
  const out = new Array(rows);
  for (let i = 0; i < rows; i++) out[i] = { id: firstId + i, value: `demo ${stamp} #${i}` };
  return { kind: "batch_upsert", args: { table: "items", key: ["id"], rows: out } };
}

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("user").value.trim();
  if (id) signIn(id);
});

$("batch").addEventListener("submit", (e) => {
  e.preventDefault();
  const rows = Math.max(1, Number($("rows").value) | 0);
  const firstId = Math.max(1, Number($("first-id").value) | 0);
  void submit(batchJob(rows, firstId)).catch(() => {});
});

$("sleep").addEventListener("submit", (e) => {
  e.preventDefault();
  const ms = Math.max(0, Number($("sleep-ms").value) | 0);
  const count = Math.max(1, Number($("sleep-count").value) | 0);
  for (let i = 0; i < count; i++) void submit({ kind: "sleep", args: { ms } }).catch(() => {});
});

// --- pong latency chart ---------------------------------------------------

function busy() {
  for (const job of jobs.values()) if (job.status === "running" || job.status === "queued") return true;
  return false;
}

setInterval(async () => {
  if (!client || client.state !== "open") return;
  try {
    const ms = await client.ping(5000);
    latencies.push({ t: performance.now(), ms, busy: busy() });
    if (latencies.length > 240) latencies.shift();
  } catch {
    // disconnected: the gap shows in the chart
  }
}, 250);

function draw() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const windowMs = 30_000;
  const now = performance.now();
  // At least 20 ms tall, so jitter of a millisecond reads as what it is: flat.
  const max = Math.max(20, ...latencies.map((p) => p.ms * 1.2));
  const x = (t) => w - ((now - t) / windowMs) * w;
  const y = (ms) => h - 14 - (ms / max) * (h - 24);
  ctx.fillStyle = "rgba(76,123,217,0.12)";
  for (const p of latencies) if (p.busy) ctx.fillRect(x(p.t) - 3, 0, 6, h);
  ctx.strokeStyle = "#dde1e8";
  ctx.fillStyle = "#5b6475";
  ctx.font = "11px system-ui";
  for (const v of [0, max / 2, max]) {
    ctx.beginPath();
    ctx.moveTo(0, y(v));
    ctx.lineTo(w, y(v));
    ctx.stroke();
    ctx.fillText(`${v.toFixed(1)} ms`, 4, y(v) - 2);
  }
  ctx.strokeStyle = "#d9534f";
  ctx.lineWidth = 2;
  ctx.beginPath();
  let last = -Infinity;
  for (const p of latencies) {
    const px = x(p.t);
    if (p.t - last > 1000) ctx.moveTo(px, y(p.ms));
    else ctx.lineTo(px, y(p.ms));
    last = p.t;
  }
  ctx.stroke();
  if (latencies.length) {
    const sorted = latencies.map((p) => p.ms).sort((a, b) => a - b);
    const p50 = sorted[Math.floor(sorted.length * 0.5)];
    const p99 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))];
    $("latency-stats").textContent = `p50 ${p50.toFixed(1)} ms · p99 ${p99.toFixed(1)} ms · last ${sorted.length}`;
  }
  requestAnimationFrame(draw);
}
requestAnimationFrame(draw);

// --- for tests and the curious ----------------------------------------------

function stats() {
  let ended = 0;
  let terminalEvents = 0;
  const terminalCounts = {};
  const statuses = {};
  for (const [id, job] of jobs) {
    if (job.terminal > 0) ended += 1;
    terminalEvents += job.terminal;
    terminalCounts[id] = job.terminal;
    statuses[id] = job.status;
  }
  return {
    jobs: jobs.size,
    ended,
    terminalEvents,
    terminalCounts,
    statuses,
    state: client ? client.state : "idle",
    reconnects: client ? client.reconnects : 0,
    duplicatesDropped: client ? client.duplicatesDropped : 0,
    lastSeq: client ? client.lastSeq : 0,
    outages: [...outages],
    tokensFetched,
    pings: latencies.length,
    gap: $("gap").style.display === "block",
    messages: [...messages],
  };
}

window.sluiceDemo = { stats, submit, batchJob, get client() { return client; } };
