/**
 * @sluice/client: a WebSocket client for the Sluice gateway that speaks
 * docs/protocol.md. It reconnects with exponential backoff and full jitter,
 * resumes from the last stored `seq` it saw (dropping duplicates), raises
 * `onGap` when the server can no longer resume, and delivers each job's
 * events until its terminal one.
 *
 * The wire types come from the Rust `proto` crate (see ./generated.ts).
 */
import type {
  BatchUpsertArgs,
  ErrorCode,
  EventFrame,
  EventStatus,
  JobRequest,
  OutgoingFrame,
  ServerFrame,
  SleepArgs,
} from "./generated.js";

export type {
  BatchUpsertArgs,
  ErrorCode,
  EventFrame,
  EventStatus,
  JobError,
  JobKind,
  JobRequest,
  OutgoingFrame,
  Progress,
  ServerFrame,
  SleepArgs,
} from "./generated.js";

/**
 * Args by kind name: what `submit` checks a job against. The default is the
 * built-in kinds; a deployment's own come from `/v1/kinds` through
 * `scripts/kinds-to-ts.mjs`, which writes an interface like this one to
 * pass as `new SluiceClient<DeploymentKinds>(...)`.
 */
export interface BuiltinKinds {
  batch_upsert: BatchUpsertArgs;
  sleep: SleepArgs;
}

/** Any kind by name, untyped args: for kinds chosen at run time. */
export interface AnyKinds {
  [kind: string]: unknown;
}

/** A job of one of `Kinds`: its name and its args. */
export type JobOf<Kinds, K extends keyof Kinds = keyof Kinds> = K extends string
  ? { kind: K; args: Kinds[K] }
  : never;

/** The `welcome` frame. */
export type Welcome = Extract<ServerFrame, { type: "welcome" }>;

/**
 * A `message` frame: what a backend published to this user (`POST
 * /v1/publish`, `sluice.publish(...)`), in the same seq order as job events.
 * `T` is the application's own type of `data`; the client does not check it.
 */
export type Message<T = unknown> = Omit<Extract<ServerFrame, { type: "message" }>, "data"> & {
  data: T;
};

/** The part of the browser `WebSocket` this client uses; inject a fake in tests. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** Opens a socket to `url` (default: `new WebSocket(url)`). */
export type SocketFactory = (url: string) => SocketLike;

/**
 * - `idle`: not started yet.
 * - `connecting`: a socket is opening, or `hello` is awaiting `welcome`.
 * - `open`: `welcome` received; frames flow.
 * - `reconnecting`: the socket closed; waiting out the backoff delay.
 * - `stopped`: `close()` was called or the server refused us (1008). Final.
 */
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "stopped";

/** Reconnect delays: attempt n waits `random() * min(maxMs, baseMs * factor^n)`. */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, maxMs: 30_000, factor: 2 };

/** Close codes with a meaning to the client (docs/protocol.md). */
export const CloseCode = {
  Normal: 1000,
  /** Heartbeat timeout: reconnect at once. */
  GoingAway: 1001,
  /** Auth failure, no hello, too many bad frames: do not retry. */
  PolicyViolation: 1008,
  /** The gateway is draining: reconnect (elsewhere) and resume. */
  ServiceRestart: 1012,
  /** Try again later. */
  TryAgainLater: 1013,
  /** The token expired: get a fresh one and reconnect with resume, at once. */
  TokenExpired: 4001,
} as const;

/** What a close code tells the client to do. */
export type CloseAction = "stop" | "retry-now" | "retry";

/**
 * 1008 stops; 1001 and 4001 (token expired: the reconnect asks the token
 * provider for a fresh one) retry at once; everything else (1012, 1013,
 * 1006, ...) retries with backoff.
 */
export function closeAction(code: number): CloseAction {
  if (code === CloseCode.PolicyViolation) return "stop";
  if (code === CloseCode.GoingAway || code === CloseCode.TokenExpired) return "retry-now";
  return "retry";
}

/** The `exp` claim (seconds since the epoch) of a JWT, if it has one. */
export function tokenExpiry(token: string): number | null {
  const payload = token.split(".")[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(globalThis.atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="))) as {
      exp?: unknown;
    };
    return typeof json.exp === "number" ? json.exp : null;
  } catch {
    return null;
  }
}

/**
 * How long before `exp` to send a `refresh`: a tenth of the time left,
 * between 1 s and 60 s, so a short-lived token is refreshed in time and a
 * long-lived one not needlessly early.
 */
export function refreshDelayMs(expSecs: number, nowMs: number): number {
  const left = expSecs * 1000 - nowMs;
  const margin = Math.min(60_000, Math.max(1_000, left / 10));
  return Math.max(0, left - margin);
}

/** The delay before reconnect attempt `attempt` (0-based): full jitter. */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * Math.pow(options.factor, attempt));
  return Math.floor(random() * ceiling);
}

/** An error the client reports: an `error` frame, a close, or a lost connection. */
export class SluiceError extends Error {
  /** The protocol's error code, or `closed` / `disconnected` / `stopped` for client-side cases. */
  readonly code: ErrorCode | "closed" | "disconnected" | "stopped" | "timeout";
  /** The WebSocket close code, for `closed`. */
  readonly closeCode?: number;
  /** The `ref` the error answered, if any. */
  readonly ref?: string;

  constructor(
    code: SluiceError["code"],
    message: string,
    extra: { closeCode?: number; ref?: string } = {},
  ) {
    super(message);
    this.name = "SluiceError";
    this.code = code;
    this.closeCode = extra.closeCode;
    this.ref = extra.ref;
  }
}

/** What `onGap` is told: the server could not replay from `after`. */
export interface GapInfo {
  /** The last seq this client had seen. */
  after: number;
  /** The server's newest seq; events continue after it. */
  lastSeq: number;
}

export interface ClientOptions {
  /** `ws://` or `wss://` URL of `/v1/ws`. */
  url: string;
  /**
   * Called before every (re)connect for a fresh token, and shortly before
   * the session's token expires, to send it with `refresh` (the server
   * closes an expired session with 4001; the client then reconnects).
   */
  token: () => string | Promise<string>;
  /** Wall clock for token expiry (ms since the epoch); default `Date.now()`. */
  wallClock?: () => number;
  /** Opens sockets; default `new WebSocket(url)`. */
  socket?: SocketFactory;
  backoff?: Partial<BackoffOptions>;
  /** Random source for the jitter (tests pass a fixed one). */
  random?: () => number;
  /** Clock for `ping()` (ms); default `performance.now()`. */
  now?: () => number;
  /** Close and retry when `welcome` has not come this long after opening. */
  connectTimeoutMs?: number;
  /** Resume from this seq on the first connect (e.g. one persisted by the app). */
  lastSeq?: number;
  /** Errors: refused connection (1008, final), `error` frames without a pending submit. */
  onError?: (error: SluiceError) => void;
  /** The server could not resume: re-read the jobs over HTTP. */
  onGap?: (gap: GapInfo) => void;
  /** Every event, after duplicate removal, in order. */
  onEvent?: (event: EventFrame) => void;
  /** Every message a backend published, after duplicate removal, in order. */
  onMessage?: (message: Message) => void;
  /** Every `welcome`. */
  onWelcome?: (welcome: Welcome) => void;
  /** Ended jobs whose events are kept for late `events()` readers. */
  keepEndedJobs?: number;
}

/** One job's events as the client keeps them. */
interface JobRecord {
  events: EventFrame[];
  ended: boolean;
  listeners: Set<(event: EventFrame) => void>;
}

interface PendingSubmit {
  resolve: (jobId: string) => void;
  reject: (error: SluiceError) => void;
  onEvent?: (event: EventFrame) => void;
  sent: boolean;
  /** The frame, kept to send again after a drain (1012). */
  frame: OutgoingFrame;
}

interface PendingPing {
  resolve: (ms: number) => void;
  reject: (error: SluiceError) => void;
  sentAt: number;
}

/** Statuses that end a job's event stream. */
export function isTerminal(status: EventStatus): boolean {
  return status === "done" || status === "failed" || status === "cancelled";
}

/** Options of one `submit`. */
export interface SubmitOptions {
  /** This job's events, from `accepted` until its terminal one. */
  onEvent?: (event: EventFrame) => void;
}

/**
 * A Sluice connection that keeps itself up. Create it, call `connect()`,
 * and `close()` when done.
 */
export class SluiceClient<Kinds extends object = BuiltinKinds> {
  private readonly options: ClientOptions;
  private readonly backoff: BackoffOptions;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly openSocket: SocketFactory;

  private socket: SocketLike | null = null;
  private stateValue: ConnectionState = "idle";
  private readonly stateListeners = new Set<(state: ConnectionState) => void>();
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  /** The token of the current socket, whose `exp` the refresh follows. */
  private currentToken: string | null = null;
  private generation = 0;

  private seq: number;
  private hasSeq: boolean;
  private session: string | null = null;
  private readonly messageListeners = new Set<(message: Message) => void>();
  private welcomeValue: Welcome | null = null;
  private resumeSent = false;

  private refCounter = 0;
  private pingCounter = 0;
  private readonly submits = new Map<string, PendingSubmit>();
  private readonly pings = new Map<number, PendingPing>();
  private readonly queued: OutgoingFrame[] = [];
  private readonly jobs = new Map<string, JobRecord>();
  private readonly endedOrder: string[] = [];

  /** Reconnects made (not counting the first connect). */
  reconnects = 0;
  /** Stored events dropped because their seq was already seen. */
  duplicatesDropped = 0;

  constructor(options: ClientOptions) {
    this.options = options;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.random = options.random ?? Math.random;
    this.now = options.now ?? (() => globalThis.performance?.now() ?? Date.now());
    this.openSocket =
      options.socket ??
      ((url) => {
        const Ctor = (globalThis as { WebSocket?: new (url: string) => SocketLike }).WebSocket;
        if (!Ctor) throw new Error("no WebSocket in this environment: pass options.socket");
        return new Ctor(url);
      });
    this.seq = options.lastSeq ?? 0;
    this.hasSeq = options.lastSeq !== undefined;
  }

  /** The current connection state. */
  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The last stored seq seen (persist it to resume after a page reload). */
  get lastSeq(): number {
    return this.seq;
  }

  /** The latest `welcome`, if any. */
  get welcome(): Welcome | null {
    return this.welcomeValue;
  }

  /**
   * Calls `listener` with the current state now and on every change;
   * returns the unsubscribe function.
   */
  subscribe(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    listener(this.stateValue);
    return () => {
      this.stateListeners.delete(listener);
    };
  }

  /** Starts connecting (idempotent). */
  connect(): void {
    if (this.stateValue !== "idle") return;
    void this.open();
  }

  /** Closes for good: pending submits and pings are rejected. */
  close(): void {
    if (this.stateValue === "stopped") return;
    this.stop(new SluiceError("stopped", "the client was closed"));
    this.socket?.close(CloseCode.Normal, "client closed");
    this.socket = null;
  }

  /**
   * Submits a job. Resolves with the job id at `accepted`; rejects on an
   * `error` answering it, or if the connection drops before the answer (the
   * job may then have been queued: look it up over HTTP). Submits made while
   * disconnected, and submits a draining gateway closed on (1012) without
   * having read them, are sent after the next `welcome`.
   */
  submit(job: JobOf<Kinds>, options: SubmitOptions = {}): Promise<string> {
    if (this.stateValue === "stopped") {
      return Promise.reject(new SluiceError("stopped", "the client is stopped"));
    }
    const ref = `r${++this.refCounter}`;
    // Kinds are open on the wire; `JobRequest` names only the built-in ones.
    const frame: OutgoingFrame = { type: "submit", ref, job: job as unknown as JobRequest };
    return new Promise<string>((resolve, reject) => {
      this.submits.set(ref, { resolve, reject, onEvent: options.onEvent, sent: false, frame });
      this.sendOrQueue(frame);
    });
  }

  /** Asks the server to cancel a job; its `cancelled` event follows if it had not ended. */
  cancel(jobId: string): void {
    if (this.stateValue === "stopped") return;
    this.sendOrQueue({ type: "cancel", job_id: jobId });
  }

  /** Round-trip time of a `ping`/`pong`, in ms. Rejects when not connected. */
  ping(timeoutMs = 10_000): Promise<number> {
    if (this.stateValue !== "open" || !this.socket) {
      return Promise.reject(new SluiceError("disconnected", "not connected"));
    }
    const id = ++this.pingCounter;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pings.delete(id)) reject(new SluiceError("timeout", "no pong"));
      }, timeoutMs);
      this.pings.set(id, {
        resolve: (ms) => {
          clearTimeout(timer);
          resolve(ms);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        sentAt: this.now(),
      });
      this.send({ type: "ping", id });
    });
  }

  /**
   * Calls `listener` with each event of `jobId` (those already received
   * first), until its terminal event; returns the unsubscribe function.
   */
  onJob(jobId: string, listener: (event: EventFrame) => void): () => void {
    const record = this.record(jobId);
    for (const event of record.events) listener(event);
    if (record.ended) return () => {};
    record.listeners.add(listener);
    return () => {
      record.listeners.delete(listener);
    };
  }

  /** The events of `jobId` as an async iterator that ends after the terminal event. */
  events(jobId: string): AsyncIterableIterator<EventFrame> {
    const buffered: EventFrame[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    const unsubscribe = this.onJob(jobId, (event) => {
      buffered.push(event);
      wake?.();
    });
    const iterator: AsyncIterableIterator<EventFrame> = {
      next: async () => {
        while (buffered.length === 0 && !finished) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = null;
        }
        const event = buffered.shift();
        if (event === undefined) return { done: true, value: undefined };
        if (isTerminal(event.status)) {
          finished = true;
          unsubscribe();
        }
        return { done: false, value: event };
      },
      return: async () => {
        finished = true;
        unsubscribe();
        buffered.length = 0;
        wake?.();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /**
   * Calls `listener` with every message from now on (after duplicate
   * removal, in seq order); returns the unsubscribe function.
   */
  onMessages<T = unknown>(listener: (message: Message<T>) => void): () => void {
    const untyped = listener as (message: Message) => void;
    this.messageListeners.add(untyped);
    return () => {
      this.messageListeners.delete(untyped);
    };
  }

  /**
   * Messages from now on as an async iterator, until `return()` (a `break`
   * out of `for await`). Messages that arrive while the loop body runs are
   * buffered, so a slow body holds them in memory.
   */
  messages<T = unknown>(): AsyncIterableIterator<Message<T>> {
    const buffered: Message<T>[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    const unsubscribe = this.onMessages<T>((message) => {
      buffered.push(message);
      wake?.();
    });
    const iterator: AsyncIterableIterator<Message<T>> = {
      next: async () => {
        while (buffered.length === 0 && !finished) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = null;
        }
        const message = buffered.shift();
        if (message === undefined) return { done: true, value: undefined };
        return { done: false, value: message };
      },
      return: async () => {
        finished = true;
        unsubscribe();
        buffered.length = 0;
        wake?.();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  // --- internals -------------------------------------------------------

  private setState(state: ConnectionState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    for (const listener of [...this.stateListeners]) listener(state);
  }

  private async open(): Promise<void> {
    this.setState("connecting");
    const generation = ++this.generation;
    let token: string;
    try {
      token = await this.options.token();
    } catch (e) {
      if (generation !== this.generation || this.stateValue === "stopped") return;
      this.options.onError?.(new SluiceError("disconnected", `token provider failed: ${String(e)}`));
      this.scheduleReconnect("retry");
      return;
    }
    if (generation !== this.generation || this.stateValue === "stopped") return;
    let socket: SocketLike;
    try {
      socket = this.openSocket(this.options.url);
    } catch (e) {
      this.options.onError?.(new SluiceError("disconnected", `cannot open socket: ${String(e)}`));
      this.scheduleReconnect("retry");
      return;
    }
    this.socket = socket;
    this.currentToken = token;
    const mine = () => this.socket === socket && this.stateValue !== "stopped";
    socket.onopen = () => {
      if (!mine()) return;
      this.resumeSent = this.hasSeq;
      const hello: OutgoingFrame = this.hasSeq
        ? {
            type: "hello",
            token,
            resume: this.session ? { session: this.session, after: this.seq } : { after: this.seq },
          }
        : { type: "hello", token };
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = (ev) => {
      if (!mine() || typeof ev.data !== "string") return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(ev.data) as ServerFrame;
      } catch {
        return;
      }
      this.handle(frame);
    };
    socket.onerror = () => {
      // A close event always follows; it decides.
    };
    socket.onclose = (ev) => {
      if (!mine()) return;
      this.socket = null;
      this.onClosed(ev.code, ev.reason);
    };
    const timeout = this.options.connectTimeoutMs ?? 10_000;
    this.clearConnectTimer();
    this.connectTimer = setTimeout(() => {
      if (this.socket === socket && this.stateValue === "connecting") {
        // Give up on this attempt; treat it as a failed connect.
        this.socket = null;
        socket.onclose = null;
        socket.close(CloseCode.Normal, "welcome timeout");
        this.onClosed(1006, "welcome timeout");
      }
    }, timeout);
  }

  private clearRefreshTimer(): void {
    if (this.refreshTimer !== null) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
    }
  }

  /** Sends `refresh` with a fresh token shortly before `exp`. */
  private scheduleRefresh(exp: number | null): void {
    this.clearRefreshTimer();
    if (exp === null) return;
    const wall = this.options.wallClock ?? Date.now;
    const socket = this.socket;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void (async () => {
        let token: string;
        try {
          token = await this.options.token();
        } catch (e) {
          // No fresh token: the server closes with 4001 at expiry, and the
          // reconnect asks again.
          this.options.onError?.(new SluiceError("disconnected", `token provider failed: ${String(e)}`));
          return;
        }
        if (this.socket !== socket || this.stateValue !== "open") return;
        this.currentToken = token;
        this.send({ type: "refresh", token });
      })();
    }, refreshDelayMs(exp, wall()));
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  private onClosed(code: number, reason: string): void {
    this.clearConnectTimer();
    this.clearRefreshTimer();
    if (code === CloseCode.ServiceRestart) {
      // A draining gateway answers every submit it read before it closes
      // with 1012 (docs/protocol.md), so one still unanswered was never
      // read: send it again after the next welcome.
      this.requeueUnanswered();
    }
    // Answers to what was sent on this socket will never come.
    this.failInFlight(new SluiceError("disconnected", `connection closed (${code})`, { closeCode: code }));
    const action = closeAction(code);
    if (action === "stop") {
      const error = new SluiceError("closed", reason || `closed with ${code}`, { closeCode: code });
      this.stop(error);
      this.options.onError?.(error);
      return;
    }
    this.scheduleReconnect(action);
  }

  private scheduleReconnect(action: "retry" | "retry-now"): void {
    if (this.stateValue === "stopped") return;
    this.setState("reconnecting");
    const delay = action === "retry-now" ? 0 : backoffDelay(this.attempt, this.backoff, this.random);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.stateValue !== "reconnecting") return;
      this.reconnects += 1;
      void this.open();
    }, delay);
  }

  private stop(error: SluiceError): void {
    this.generation += 1;
    this.clearConnectTimer();
    this.clearRefreshTimer();
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.setState("stopped");
    for (const [ref, pending] of this.submits) {
      this.submits.delete(ref);
      pending.reject(error);
    }
    this.queued.length = 0;
    this.failPings(error);
  }

  /** Queues the submits sent on a socket that closed, to be sent again. */
  private requeueUnanswered(): void {
    for (const pending of this.submits.values()) {
      if (pending.sent) {
        pending.sent = false;
        this.queued.push(pending.frame);
      }
    }
  }

  /** Rejects submits already sent and pings on a socket that closed. */
  private failInFlight(error: SluiceError): void {
    for (const [ref, pending] of this.submits) {
      if (pending.sent) {
        this.submits.delete(ref);
        pending.reject(error);
      }
    }
    this.failPings(error);
  }

  private failPings(error: SluiceError): void {
    for (const [id, pending] of this.pings) {
      this.pings.delete(id);
      pending.reject(error);
    }
  }

  private sendOrQueue(frame: OutgoingFrame): void {
    if (this.stateValue === "open" && this.socket) this.send(frame);
    else this.queued.push(frame);
  }

  private send(frame: OutgoingFrame): void {
    if (frame.type === "submit") {
      const pending = this.submits.get(frame.ref);
      if (pending) pending.sent = true;
    }
    this.socket?.send(JSON.stringify(frame));
  }

  private handle(frame: ServerFrame): void {
    switch (frame.type) {
      case "welcome":
        this.onWelcome(frame);
        return;
      case "pong": {
        const pending = this.pings.get(frame.id);
        if (pending) {
          this.pings.delete(frame.id);
          pending.resolve(this.now() - pending.sentAt);
        }
        return;
      }
      case "accepted": {
        const pending = this.submits.get(frame.ref);
        if (!pending) return;
        this.submits.delete(frame.ref);
        // Register before resolving: the job's events may follow at once.
        if (pending.onEvent) this.onJob(frame.job_id, pending.onEvent);
        else this.record(frame.job_id);
        pending.resolve(frame.job_id);
        return;
      }
      case "event":
        this.onEventFrame(frame);
        return;
      case "message":
        this.onMessageFrame(frame);
        return;
      case "refreshed":
        this.scheduleRefresh(frame.exp);
        return;
      case "error": {
        const error = new SluiceError(frame.code, frame.message, { ref: frame.ref ?? undefined });
        const pending = frame.ref != null ? this.submits.get(frame.ref) : undefined;
        if (pending && frame.ref != null) {
          this.submits.delete(frame.ref);
          pending.reject(error);
        } else {
          this.options.onError?.(error);
        }
        return;
      }
    }
  }

  private onWelcome(welcome: Welcome): void {
    this.clearConnectTimer();
    this.welcomeValue = welcome;
    this.session = welcome.session;
    this.attempt = 0;
    if (this.resumeSent && !welcome.resumed) {
      const gap: GapInfo = { after: this.seq, lastSeq: welcome.last_seq };
      this.seq = welcome.last_seq;
      this.options.onGap?.(gap);
    } else if (!this.resumeSent) {
      // A fresh start: the stream continues after the server's newest seq.
      this.seq = welcome.last_seq;
    }
    this.hasSeq = true;
    this.setState("open");
    this.scheduleRefresh(this.currentToken === null ? null : tokenExpiry(this.currentToken));
    this.options.onWelcome?.(welcome);
    const queued = this.queued.splice(0);
    for (const frame of queued) this.send(frame);
  }

  private onEventFrame(frame: EventFrame): void {
    const event: EventFrame = { ...frame };
    if (event.status !== "progress") {
      if (event.seq <= this.seq) {
        this.duplicatesDropped += 1;
        return;
      }
      this.seq = event.seq;
    }
    const record = this.record(event.job_id);
    if (record.ended) return;
    record.events.push(event);
    if (isTerminal(event.status)) {
      record.ended = true;
      this.endedOrder.push(event.job_id);
      const keep = this.options.keepEndedJobs ?? 1000;
      while (this.endedOrder.length > keep) {
        const old = this.endedOrder.shift();
        if (old !== undefined) this.jobs.delete(old);
      }
    }
    this.options.onEvent?.(event);
    for (const listener of [...record.listeners]) listener(event);
    if (record.ended) record.listeners.clear();
  }

  private onMessageFrame(frame: Message): void {
    if (frame.seq <= this.seq) {
      this.duplicatesDropped += 1;
      return;
    }
    this.seq = frame.seq;
    const message: Message = { ...frame };
    this.options.onMessage?.(message);
    for (const listener of [...this.messageListeners]) listener(message);
  }

  private record(jobId: string): JobRecord {
    let record = this.jobs.get(jobId);
    if (!record) {
      record = { events: [], ended: false, listeners: new Set() };
      this.jobs.set(jobId, record);
    }
    return record;
  }
}

/**
 * The `ws://` / `wss://` URL of `path` resolved against the page's URL, so
 * a page served behind a proxy (even under a path prefix) connects back
 * through it: `wsUrl("v1/ws", location.href)`.
 */
export function wsUrl(path: string, base: string): string {
  const url = new URL(path, base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  return url.toString();
}
