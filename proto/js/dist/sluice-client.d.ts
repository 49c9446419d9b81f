/**
 * @sluice/client: a WebSocket client for the Sluice gateway that speaks
 * docs/protocol.md. It reconnects with exponential backoff and full jitter,
 * resumes from the last stored `seq` it saw (dropping duplicates), raises
 * `onGap` when the server can no longer resume, and delivers each job's
 * events until its terminal one.
 *
 * The wire types come from the Rust `proto` crate (see ./generated.ts).
 */
import type { BatchUpsertArgs, ErrorCode, EventFrame, EventStatus, ServerFrame, SleepArgs } from "./generated.js";
export type { BatchUpsertArgs, ErrorCode, EventFrame, EventStatus, JobError, JobKind, JobRequest, OutgoingFrame, Progress, ServerFrame, SleepArgs, } from "./generated.js";
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
export type JobOf<Kinds, K extends keyof Kinds = keyof Kinds> = K extends string ? {
    kind: K;
    args: Kinds[K];
} : never;
/** The `welcome` frame. */
export type Welcome = Extract<ServerFrame, {
    type: "welcome";
}>;
/**
 * A `message` frame: what a backend published to this user (`POST
 * /v1/publish`, `sluice.publish(...)`), in the same seq order as job events.
 * `T` is the application's own type of `data`; the client does not check it.
 */
export type Message<T = unknown> = Omit<Extract<ServerFrame, {
    type: "message";
}>, "data"> & {
    data: T;
};
/** The part of the browser `WebSocket` this client uses; inject a fake in tests. */
export interface SocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
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
export declare const DEFAULT_BACKOFF: BackoffOptions;
/** Close codes with a meaning to the client (docs/protocol.md). */
export declare const CloseCode: {
    readonly Normal: 1000;
    /** Heartbeat timeout: reconnect at once. */
    readonly GoingAway: 1001;
    /** Auth failure, no hello, too many bad frames: do not retry. */
    readonly PolicyViolation: 1008;
    /** The gateway is draining: reconnect (elsewhere) and resume. */
    readonly ServiceRestart: 1012;
    /** Try again later. */
    readonly TryAgainLater: 1013;
    /** The token expired: get a fresh one and reconnect with resume, at once. */
    readonly TokenExpired: 4001;
};
/** What a close code tells the client to do. */
export type CloseAction = "stop" | "retry-now" | "retry";
/**
 * 1008 stops; 1001 and 4001 (token expired: the reconnect asks the token
 * provider for a fresh one) retry at once; everything else (1012, 1013,
 * 1006, ...) retries with backoff.
 */
export declare function closeAction(code: number): CloseAction;
/** The `exp` claim (seconds since the epoch) of a JWT, if it has one. */
export declare function tokenExpiry(token: string): number | null;
/**
 * How long before `exp` to send a `refresh`: a tenth of the time left,
 * between 1 s and 60 s, so a short-lived token is refreshed in time and a
 * long-lived one not needlessly early.
 */
export declare function refreshDelayMs(expSecs: number, nowMs: number): number;
/** The delay before reconnect attempt `attempt` (0-based): full jitter. */
export declare function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;
/** An error the client reports: an `error` frame, a close, or a lost connection. */
export declare class SluiceError extends Error {
    /** The protocol's error code, or `closed` / `disconnected` / `stopped` for client-side cases. */
    readonly code: ErrorCode | "closed" | "disconnected" | "stopped" | "timeout";
    /** The WebSocket close code, for `closed`. */
    readonly closeCode?: number;
    /** The `ref` the error answered, if any. */
    readonly ref?: string;
    constructor(code: SluiceError["code"], message: string, extra?: {
        closeCode?: number;
        ref?: string;
    });
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
/** Statuses that end a job's event stream. */
export declare function isTerminal(status: EventStatus): boolean;
/** Options of one `submit`. */
export interface SubmitOptions {
    /** This job's events, from `accepted` until its terminal one. */
    onEvent?: (event: EventFrame) => void;
}
/**
 * A Sluice connection that keeps itself up. Create it, call `connect()`,
 * and `close()` when done.
 */
export declare class SluiceClient<Kinds extends object = BuiltinKinds> {
    private readonly options;
    private readonly backoff;
    private readonly random;
    private readonly now;
    private readonly openSocket;
    private socket;
    private stateValue;
    private readonly stateListeners;
    private attempt;
    private retryTimer;
    private connectTimer;
    private refreshTimer;
    /** The token of the current socket, whose `exp` the refresh follows. */
    private currentToken;
    private generation;
    private seq;
    private hasSeq;
    private session;
    private readonly messageListeners;
    private welcomeValue;
    private resumeSent;
    private refCounter;
    private pingCounter;
    private readonly submits;
    private readonly pings;
    private readonly queued;
    private readonly jobs;
    private readonly endedOrder;
    /** Reconnects made (not counting the first connect). */
    reconnects: number;
    /** Stored events dropped because their seq was already seen. */
    duplicatesDropped: number;
    constructor(options: ClientOptions);
    /** The current connection state. */
    get state(): ConnectionState;
    /** The last stored seq seen (persist it to resume after a page reload). */
    get lastSeq(): number;
    /** The latest `welcome`, if any. */
    get welcome(): Welcome | null;
    /**
     * Calls `listener` with the current state now and on every change;
     * returns the unsubscribe function.
     */
    subscribe(listener: (state: ConnectionState) => void): () => void;
    /** Starts connecting (idempotent). */
    connect(): void;
    /** Closes for good: pending submits and pings are rejected. */
    close(): void;
    /**
     * Submits a job. Resolves with the job id at `accepted`; rejects on an
     * `error` answering it, or if the connection drops before the answer (the
     * job may then have been queued: look it up over HTTP). Submits made while
     * disconnected, and submits a draining gateway closed on (1012) without
     * having read them, are sent after the next `welcome`.
     */
    submit(job: JobOf<Kinds>, options?: SubmitOptions): Promise<string>;
    /** Asks the server to cancel a job; its `cancelled` event follows if it had not ended. */
    cancel(jobId: string): void;
    /** Round-trip time of a `ping`/`pong`, in ms. Rejects when not connected. */
    ping(timeoutMs?: number): Promise<number>;
    /**
     * Calls `listener` with each event of `jobId` (those already received
     * first), until its terminal event; returns the unsubscribe function.
     */
    onJob(jobId: string, listener: (event: EventFrame) => void): () => void;
    /** The events of `jobId` as an async iterator that ends after the terminal event. */
    events(jobId: string): AsyncIterableIterator<EventFrame>;
    /**
     * Calls `listener` with every message from now on (after duplicate
     * removal, in seq order); returns the unsubscribe function.
     */
    onMessages<T = unknown>(listener: (message: Message<T>) => void): () => void;
    /**
     * Messages from now on as an async iterator, until `return()` (a `break`
     * out of `for await`). Messages that arrive while the loop body runs are
     * buffered, so a slow body holds them in memory.
     */
    messages<T = unknown>(): AsyncIterableIterator<Message<T>>;
    private setState;
    private open;
    private clearRefreshTimer;
    /** Sends `refresh` with a fresh token shortly before `exp`. */
    private scheduleRefresh;
    private clearConnectTimer;
    private onClosed;
    private scheduleReconnect;
    private stop;
    /** Queues the submits sent on a socket that closed, to be sent again. */
    private requeueUnanswered;
    /** Rejects submits already sent and pings on a socket that closed. */
    private failInFlight;
    private failPings;
    private sendOrQueue;
    private send;
    private handle;
    private onWelcome;
    private onEventFrame;
    private onMessageFrame;
    private record;
}
/**
 * The `ws://` / `wss://` URL of `path` resolved against the page's URL, so
 * a page served behind a proxy (even under a path prefix) connects back
 * through it: `wsUrl("v1/ws", location.href)`.
 */
export declare function wsUrl(path: string, base: string): string;
