// Unit tests of the client against a fake socket (node:test).
import { test, mock } from "node:test";
import assert from "node:assert/strict";

import {
  SluiceClient,
  SluiceError,
  backoffDelay,
  closeAction,
  refreshDelayMs,
  tokenExpiry,
  wsUrl,
  type AnyKinds,
  type ClientOptions,
  type Message,
  type ConnectionState,
  type EventFrame,
  type GapInfo,
  type OutgoingFrame,
  type ServerFrame,
  type SocketLike,
} from "../src/sluice-client.js";

/** A socket the test drives by hand. */
class FakeSocket implements SocketLike {
  readyState = 0;
  sent: OutgoingFrame[] = [];
  closedWith: number | undefined;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as OutgoingFrame);
  }
  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  // --- the server side ---
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(frame: ServerFrame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  welcome(lastSeq: number, resumed = false): void {
    this.deliver({
      type: "welcome",
      session: "s",
      user: "u",
      heartbeat_ms: 25000,
      resumed,
      last_seq: lastSeq,
    });
  }
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

interface Harness {
  client: SluiceClient;
  sockets: FakeSocket[];
  tokens: number;
  errors: SluiceError[];
  gaps: GapInfo[];
  events: EventFrame[];
  states: ConnectionState[];
}

function harness(extra: Partial<ClientOptions> = {}): Harness {
  const h: Harness = {
    sockets: [],
    tokens: 0,
    errors: [],
    gaps: [],
    events: [],
    states: [],
    client: undefined as unknown as SluiceClient,
  };
  h.client = new SluiceClient({
    url: "ws://test/v1/ws",
    token: () => `token-${++h.tokens}`,
    socket: (url) => {
      const s = new FakeSocket(url);
      h.sockets.push(s);
      return s;
    },
    random: () => 1,
    onError: (e) => h.errors.push(e),
    onGap: (g) => h.gaps.push(g),
    onEvent: (e) => h.events.push(e),
    ...extra,
  });
  h.client.subscribe((s) => h.states.push(s));
  return h;
}

/** Lets the token promise and other microtasks settle. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Connects and completes the handshake on a new socket. */
async function connected(h: Harness, lastSeq = 0, resumed = false): Promise<FakeSocket> {
  if (h.client.state === "idle") h.client.connect();
  await settle();
  const s = h.sockets[h.sockets.length - 1];
  s.open();
  s.welcome(lastSeq, resumed);
  return s;
}

function ev(seq: number, jobId: string, status: EventFrame["status"]): ServerFrame {
  return { type: "event", seq, job_id: jobId, status };
}

test("backoff: exponential ceiling, capped, full jitter", () => {
  const opts = { baseMs: 100, maxMs: 1000, factor: 2 };
  const ceilings = [0, 1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, opts, () => 0.999999));
  assert.deepEqual(ceilings, [99, 199, 399, 799, 999, 999, 999]);
  assert.equal(backoffDelay(3, opts, () => 0), 0, "full jitter reaches zero");
  assert.equal(backoffDelay(3, opts, () => 0.5), 400);
});

test("close codes: 1008 stops, 1001 retries at once, others back off", () => {
  assert.equal(closeAction(1008), "stop");
  assert.equal(closeAction(1001), "retry-now");
  assert.equal(closeAction(1012), "retry");
  assert.equal(closeAction(1013), "retry");
  assert.equal(closeAction(1006), "retry");
  assert.equal(closeAction(4001), "retry-now", "token expired: a fresh token at once");
});

test("hello carries a fresh token on every connect, and resume after the first", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness({ backoff: { baseMs: 100, maxMs: 10_000, factor: 2 } });
    const s1 = await connected(h, 5);
    assert.deepEqual(s1.sent[0], { type: "hello", token: "token-1" });
    s1.deliver(ev(6, "j1", "running"));
    s1.serverClose(1012);
    assert.equal(h.client.state, "reconnecting");
    mock.timers.tick(100);
    await settle();
    const s2 = h.sockets[1];
    s2.open();
    assert.deepEqual(s2.sent[0], {
      type: "hello",
      token: "token-2",
      resume: { session: "s", after: 6 },
    });
  } finally {
    mock.timers.reset();
  }
});

test("reconnect schedule follows the backoff and resets after welcome", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness({ backoff: { baseMs: 100, maxMs: 500, factor: 2 } });
    const s1 = await connected(h);
    // Three failed attempts in a row: 100, 200, 400 ms, then capped at 500.
    s1.serverClose(1013);
    for (const [i, delay] of [100, 200, 400, 500].entries()) {
      const before = h.sockets.length;
      mock.timers.tick(delay - 1);
      await settle();
      assert.equal(h.sockets.length, before, `attempt ${i} not before ${delay} ms`);
      mock.timers.tick(1);
      await settle();
      assert.equal(h.sockets.length, before + 1, `attempt ${i} at ${delay} ms`);
      h.sockets[h.sockets.length - 1].serverClose(1006);
    }
    // A successful welcome resets the schedule to the base delay.
    mock.timers.tick(800);
    await settle();
    const good = h.sockets[h.sockets.length - 1];
    good.open();
    good.welcome(0, true);
    assert.equal(h.client.state, "open");
    good.serverClose(1012);
    const before = h.sockets.length;
    mock.timers.tick(100);
    await settle();
    assert.equal(h.sockets.length, before + 1);
    assert.ok(h.client.reconnects >= 5);
  } finally {
    mock.timers.reset();
  }
});

test("1001 reconnects at once, without waiting for the backoff", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness({ backoff: { baseMs: 5000, maxMs: 5000, factor: 2 } });
    const s1 = await connected(h);
    s1.serverClose(1001);
    mock.timers.tick(0);
    await settle();
    assert.equal(h.sockets.length, 2);
    assert.equal(h.client.state, "connecting");
  } finally {
    mock.timers.reset();
  }
});

test("1012 and 1013 retry with backoff", async () => {
  for (const code of [1012, 1013]) {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const h = harness({ backoff: { baseMs: 1000, maxMs: 1000, factor: 2 } });
      const s1 = await connected(h);
      s1.serverClose(code);
      assert.equal(h.client.state, "reconnecting");
      mock.timers.tick(999);
      await settle();
      assert.equal(h.sockets.length, 1, `${code}: waits`);
      mock.timers.tick(1);
      await settle();
      assert.equal(h.sockets.length, 2, `${code}: retries`);
      assert.equal(h.errors.length, 0);
    } finally {
      mock.timers.reset();
    }
  }
});

test("1008 stops, reports, and rejects what was pending", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness();
    const s1 = await connected(h);
    const pending = h.client.submit({ kind: "sleep", args: { ms: 1 } });
    s1.serverClose(1008, "token expired");
    await assert.rejects(pending, (e: SluiceError) => e.code === "disconnected");
    assert.equal(h.client.state, "stopped");
    assert.equal(h.errors.length, 1);
    assert.equal(h.errors[0].code, "closed");
    assert.equal(h.errors[0].closeCode, 1008);
    assert.equal(h.errors[0].message, "token expired");
    mock.timers.tick(60_000);
    await settle();
    assert.equal(h.sockets.length, 1, "never reconnects");
    await assert.rejects(h.client.submit({ kind: "sleep", args: { ms: 1 } }));
    assert.deepEqual(h.states, ["idle", "connecting", "open", "stopped"]);
  } finally {
    mock.timers.reset();
  }
});

test("duplicates by seq are dropped; progress (seq 0) passes", async () => {
  const h = harness();
  const s = await connected(h, 10);
  s.deliver(ev(11, "a", "running"));
  s.deliver({ type: "event", seq: 0, job_id: "a", status: "progress", progress: { done: 1, total: 2 } });
  s.deliver(ev(11, "a", "running"));
  s.deliver(ev(10, "x", "done"));
  s.deliver(ev(12, "a", "done"));
  s.deliver(ev(12, "a", "done"));
  assert.deepEqual(
    h.events.map((e) => [e.seq, e.status]),
    [
      [11, "running"],
      [0, "progress"],
      [12, "done"],
    ],
  );
  assert.equal(h.client.duplicatesDropped, 3);
  assert.equal(h.client.lastSeq, 12);
});

test("messages share the seq with events: typed, deduplicated, in order, iterable", async () => {
  const seen: Message[] = [];
  const h = harness({ onMessage: (m) => seen.push(m) });
  const s = await connected(h, 10);
  const typed: { text: string }[] = [];
  const off = h.client.onMessages<{ text: string }>((m) => typed.push(m.data));
  const iterator = h.client.messages<{ text: string }>();
  const first = iterator.next();
  s.deliver({ type: "message", seq: 11, data: { text: "export ready" }, id: "k1" });
  s.deliver(ev(12, "a", "done"));
  s.deliver({ type: "message", seq: 11, data: { text: "export ready" }, id: "k1" });
  s.deliver({ type: "message", seq: 9, data: { text: "old" }, id: "k0" });
  s.deliver({ type: "message", seq: 13, data: { text: "second" }, id: "k2" });
  assert.deepEqual(
    seen.map((m) => [m.seq, m.id]),
    [
      [11, "k1"],
      [13, "k2"],
    ],
  );
  assert.deepEqual(typed.map((d) => d.text), ["export ready", "second"]);
  assert.deepEqual(h.events.map((e) => e.seq), [12]);
  assert.equal(h.client.duplicatesDropped, 2);
  assert.equal(h.client.lastSeq, 13);
  assert.equal((await first).value?.data.text, "export ready");
  assert.equal((await iterator.next()).value?.data.text, "second");
  off();
  await iterator.return?.();
  s.deliver({ type: "message", seq: 14, data: { text: "after" }, id: "k3" });
  assert.deepEqual(typed.length, 2, "unsubscribed");
  assert.equal((await iterator.next()).done, true);
});

test("a replay after resume that repeats seen events delivers each once", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness({ backoff: { baseMs: 10, maxMs: 10, factor: 2 } });
    const s1 = await connected(h, 0);
    s1.deliver(ev(1, "a", "running"));
    s1.deliver(ev(2, "a", "done"));
    s1.serverClose(1012);
    mock.timers.tick(10);
    await settle();
    const s2 = h.sockets[1];
    s2.open();
    assert.deepEqual((s2.sent[0] as { resume: unknown }).resume, { session: "s", after: 2 });
    s2.welcome(4, true);
    s2.deliver(ev(2, "a", "done")); // a server that over-sends: dropped
    s2.deliver(ev(3, "b", "running"));
    s2.deliver(ev(4, "b", "done"));
    assert.deepEqual(
      h.events.map((e) => e.seq),
      [1, 2, 3, 4],
    );
    assert.equal(h.gaps.length, 0);
  } finally {
    mock.timers.reset();
  }
});

test("resumed: false raises onGap and continues from the server's seq", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness({ backoff: { baseMs: 10, maxMs: 10, factor: 2 } });
    const s1 = await connected(h, 0);
    s1.deliver(ev(7, "a", "running"));
    s1.serverClose(1006);
    mock.timers.tick(10);
    await settle();
    const s2 = h.sockets[1];
    s2.open();
    s2.welcome(3, false); // the server's history was reset: it is behind us
    assert.deepEqual(h.gaps, [{ after: 7, lastSeq: 3 }]);
    s2.deliver(ev(4, "c", "done"));
    assert.deepEqual(
      h.events.map((e) => e.seq),
      [7, 4],
    );
  } finally {
    mock.timers.reset();
  }
});

test("no gap on the first connect, and resumed: true is not a gap", async () => {
  const h = harness({ lastSeq: 5 });
  const s = await connected(h, 9, true);
  assert.deepEqual((s.sent[0] as { resume: unknown }).resume, { after: 5 });
  assert.equal(h.gaps.length, 0);
  const fresh = harness();
  await connected(fresh, 9, false);
  assert.equal(fresh.gaps.length, 0);
});

test("submit resolves at accepted, events per job end at the terminal one", async () => {
  const h = harness();
  const s = await connected(h);
  const seen: string[] = [];
  const p = h.client.submit({ kind: "sleep", args: { ms: 5 } }, { onEvent: (e) => seen.push(e.status) });
  await settle();
  const submit = s.sent[1];
  assert.equal(submit.type, "submit");
  const ref = (submit as { ref: string }).ref;
  assert.deepEqual((submit as { job: unknown }).job, { kind: "sleep", args: { ms: 5 } });
  s.deliver({ type: "accepted", ref, job_id: "j1" });
  s.deliver(ev(1, "j1", "running"));
  s.deliver({ type: "event", seq: 0, job_id: "j1", status: "progress", progress: { done: 1, total: 1 } });
  s.deliver(ev(2, "j1", "done"));
  s.deliver({ type: "event", seq: 0, job_id: "j1", status: "progress" });
  assert.equal(await p, "j1");
  assert.deepEqual(seen, ["running", "progress", "done"]);
  // A late async iterator still sees the whole history, then ends.
  const statuses: string[] = [];
  for await (const e of h.client.events("j1")) statuses.push(e.status);
  assert.deepEqual(statuses, ["running", "progress", "done"]);
});

test("async iterator waits for live events", async () => {
  const h = harness();
  const s = await connected(h);
  const p = h.client.submit({ kind: "sleep", args: { ms: 5 } });
  await settle();
  s.deliver({ type: "accepted", ref: (s.sent[1] as { ref: string }).ref, job_id: "j2" });
  const id = await p;
  const collected = (async () => {
    const out: number[] = [];
    for await (const e of h.client.events(id)) out.push(e.seq);
    return out;
  })();
  await settle();
  s.deliver(ev(1, "j2", "running"));
  await settle();
  s.deliver(ev(2, "j2", "cancelled"));
  assert.deepEqual(await collected, [1, 2]);
});

test("submit rejects on an error with the same ref; other errors go to onError", async () => {
  const h = harness();
  const s = await connected(h);
  const p = h.client.submit({ kind: "sleep", args: { ms: 5 } });
  await settle();
  const ref = (s.sent[1] as { ref: string }).ref;
  s.deliver({ type: "error", ref: "someone-else", code: "overloaded", message: "x" });
  s.deliver({ type: "error", ref, code: "bad_args", message: "nope" });
  await assert.rejects(p, (e: SluiceError) => e.code === "bad_args" && e.ref === ref);
  assert.equal(h.errors.length, 1);
  assert.equal(h.errors[0].code, "overloaded");
});

test("submits and cancels made while disconnected are sent after welcome", async () => {
  const h = harness();
  h.client.connect();
  const p = h.client.submit({ kind: "sleep", args: { ms: 1 } });
  h.client.cancel("j9");
  await settle();
  const s = h.sockets[0];
  s.open();
  assert.equal(s.sent.length, 1, "only hello before welcome");
  s.welcome(0);
  assert.deepEqual(
    s.sent.map((f) => f.type),
    ["hello", "submit", "cancel"],
  );
  s.deliver({ type: "accepted", ref: (s.sent[1] as { ref: string }).ref, job_id: "j" });
  assert.equal(await p, "j");
});

test("a submit unanswered at a 1012 drain is sent again after the next welcome; at 1013 it fails", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness({ backoff: { baseMs: 10, maxMs: 10, factor: 2 } });
    const s1 = await connected(h);
    const drained = h.client.submit({ kind: "sleep", args: { ms: 1 } });
    const ref = (s1.sent[1] as { ref: string }).ref;
    s1.serverClose(1012, "server restarting");
    mock.timers.tick(10);
    await settle();
    const s2 = h.sockets[1];
    s2.open();
    s2.welcome(0);
    const resent = s2.sent.filter((f) => f.type === "submit") as { ref: string }[];
    assert.deepEqual(resent.map((f) => f.ref), [ref], "the same submit, once");
    s2.deliver({ type: "accepted", ref, job_id: "j1" });
    assert.equal(await drained, "j1");

    const lost = h.client.submit({ kind: "sleep", args: { ms: 1 } });
    s2.serverClose(1013);
    await assert.rejects(lost, (e: SluiceError) => e.code === "disconnected" && e.closeCode === 1013);
  } finally {
    mock.timers.reset();
  }
});

test("ping measures the round trip; state observable subscribes and unsubscribes", async () => {
  let clock = 1000;
  const h = harness({ now: () => clock });
  const s = await connected(h);
  const p = h.client.ping();
  const ping = s.sent[1] as { type: string; id: number };
  assert.equal(ping.type, "ping");
  clock += 7;
  s.deliver({ type: "pong", id: ping.id });
  assert.equal(await p, 7);

  const seen: ConnectionState[] = [];
  const off = h.client.subscribe((st) => seen.push(st));
  h.client.close();
  off();
  assert.deepEqual(seen, ["open", "stopped"]);
  assert.deepEqual(h.states, ["idle", "connecting", "open", "stopped"]);
  await assert.rejects(h.client.ping(), (e: SluiceError) => e.code === "disconnected");
});

test("wsUrl follows the page's scheme, host and path prefix", () => {
  assert.equal(wsUrl("v1/ws", "http://h:8080/demo"), "ws://h:8080/v1/ws");
  assert.equal(wsUrl("v1/ws", "https://example.com/sluice/demo#x"), "wss://example.com/sluice/v1/ws");
});

/** An unsigned JWT-shaped token with this `exp` (the client only reads it). */
function jwtWithExp(exp: number, n: number): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64({ sub: "u", exp, n })}.sig`;
}

test("token expiry is read from the JWT and refreshed a tenth of its life early", () => {
  assert.equal(tokenExpiry(jwtWithExp(1_700_000_000, 1)), 1_700_000_000);
  assert.equal(tokenExpiry("not-a-jwt"), null);
  assert.equal(tokenExpiry("a.!!!.c"), null);
  // 100 s left: refresh 10 s before; 1 h left: 60 s before; 2 s left: 1 s before.
  assert.equal(refreshDelayMs(100, 0), 90_000);
  assert.equal(refreshDelayMs(3600, 0), 3_540_000);
  assert.equal(refreshDelayMs(2, 0), 1_000);
  assert.equal(refreshDelayMs(1, 5_000), 0, "already expired: at once");
});

test("before the token expires the client sends refresh with a fresh one, and again after refreshed", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    let wall = 1_000_000_000_000;
    let n = 0;
    const h = harness({
      token: () => jwtWithExp(Math.floor(wall / 1000) + 100, ++n),
      wallClock: () => wall,
    });
    const s = await connected(h);
    assert.deepEqual(s.sent.map((f) => f.type), ["hello"]);
    wall += 89_000;
    mock.timers.tick(89_000);
    await settle();
    assert.deepEqual(s.sent.map((f) => f.type), ["hello"], "not yet");
    wall += 1_000;
    mock.timers.tick(1_000);
    await settle();
    const refresh = s.sent[1];
    assert.equal(refresh.type, "refresh");
    assert.equal(tokenExpiry((refresh as { token: string }).token), Math.floor(wall / 1000) + 100);
    s.deliver({ type: "refreshed", exp: Math.floor(wall / 1000) + 100 });
    wall += 90_000;
    mock.timers.tick(90_000);
    await settle();
    assert.deepEqual(s.sent.map((f) => f.type), ["hello", "refresh", "refresh"]);
    assert.equal(h.client.state, "open");
  } finally {
    mock.timers.reset();
  }
});

test("4001 reconnects at once with a fresh token and resumes", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const h = harness({ backoff: { baseMs: 5000, maxMs: 5000, factor: 2 } });
    const s1 = await connected(h, 7);
    s1.serverClose(4001, "token expired");
    mock.timers.tick(0);
    await settle();
    assert.equal(h.sockets.length, 2);
    const s2 = h.sockets[1];
    s2.open();
    const hello = s2.sent[0] as { type: string; token: string; resume?: { after: number } };
    assert.equal(hello.type, "hello");
    assert.equal(hello.token, "token-2", "a fresh token");
    assert.equal(hello.resume?.after, 7, "resumes where it stopped");
    assert.equal(h.errors.length, 0, "not an error: the client carries on");
  } finally {
    mock.timers.reset();
  }
});

test("a client typed with a deployment's kinds submits them by name, and the compiler checks their args", async () => {
  interface DeploymentKinds {
    archive_orders: { customer: number };
    sleep: { ms: number };
  }
  const sockets: FakeSocket[] = [];
  const client = new SluiceClient<DeploymentKinds>({
    url: "ws://test/v1/ws",
    token: () => "t",
    socket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    random: () => 1,
  });
  client.connect();
  await settle();
  sockets[0].open();
  sockets[0].welcome(0, false);
  const quiet = () => {};
  client.submit({ kind: "archive_orders", args: { customer: 7 } }).catch(quiet);
  // @ts-expect-error: args of another kind
  client.submit({ kind: "archive_orders", args: { ms: 1 } }).catch(quiet);
  // @ts-expect-error: a kind the deployment does not declare
  client.submit({ kind: "mine_coins", args: {} }).catch(quiet);
  await settle();
  const job = (sockets[0].sent[1] as { job: unknown }).job;
  assert.deepEqual(job, { kind: "archive_orders", args: { customer: 7 } });
  // Kinds chosen at run time: AnyKinds takes any name.
  const open = new SluiceClient<AnyKinds>({ url: "ws://test/v1/ws", token: () => "t", socket: (u) => new FakeSocket(u) });
  open.submit({ kind: "whatever_the_server_lists", args: { x: 1 } }).catch(quiet);
  open.close();
  client.close();
});
