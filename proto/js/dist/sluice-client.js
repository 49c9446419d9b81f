export const DEFAULT_BACKOFF = { baseMs: 250, maxMs: 30000, factor: 2 };
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
};
/**
 * 1008 stops; 1001 and 4001 (token expired: the reconnect asks the token
 * provider for a fresh one) retry at once; everything else (1012, 1013,
 * 1006, ...) retries with backoff.
 */
export function closeAction(code) {
    if (code === CloseCode.PolicyViolation)
        return "stop";
    if (code === CloseCode.GoingAway || code === CloseCode.TokenExpired)
        return "retry-now";
    return "retry";
}
/** The `exp` claim (seconds since the epoch) of a JWT, if it has one. */
export function tokenExpiry(token) {
    const payload = token.split(".")[1];
    if (!payload)
        return null;
    try {
        const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
        const json = JSON.parse(globalThis.atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")));
        return typeof json.exp === "number" ? json.exp : null;
    }
    catch {
        return null;
    }
}
/**
 * How long before `exp` to send a `refresh`: a tenth of the time left,
 * between 1 s and 60 s, so a short-lived token is refreshed in time and a
 * long-lived one not needlessly early.
 */
export function refreshDelayMs(expSecs, nowMs) {
    const left = expSecs * 1000 - nowMs;
    const margin = Math.min(60000, Math.max(1000, left / 10));
    return Math.max(0, left - margin);
}
/** The delay before reconnect attempt `attempt` (0-based): full jitter. */
export function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
    const ceiling = Math.min(options.maxMs, options.baseMs * Math.pow(options.factor, attempt));
    return Math.floor(random() * ceiling);
}
/** An error the client reports: an `error` frame, a close, or a lost connection. */
export class SluiceError extends Error {
    constructor(code, message, extra = {}) {
        super(message);
        this.name = "SluiceError";
        this.code = code;
        this.closeCode = extra.closeCode;
        this.ref = extra.ref;
    }
}
/** Statuses that end a job's event stream. */
export function isTerminal(status) {
    return status === "done" || status === "failed" || status === "cancelled";
}
/**
 * A Sluice connection that keeps itself up. Create it, call `connect()`,
 * and `close()` when done.
 */
export class SluiceClient {
    constructor(options) {
        this.socket = null;
        this.stateValue = "idle";
        this.stateListeners = new Set();
        this.attempt = 0;
        this.retryTimer = null;
        this.connectTimer = null;
        this.refreshTimer = null;
        /** The token of the current socket, whose `exp` the refresh follows. */
        this.currentToken = null;
        this.generation = 0;
        this.session = null;
        this.messageListeners = new Set();
        this.welcomeValue = null;
        this.resumeSent = false;
        this.refCounter = 0;
        this.pingCounter = 0;
        this.submits = new Map();
        this.pings = new Map();
        this.queued = [];
        this.jobs = new Map();
        this.endedOrder = [];
        /** Reconnects made (not counting the first connect). */
        this.reconnects = 0;
        /** Stored events dropped because their seq was already seen. */
        this.duplicatesDropped = 0;
        this.options = options;
        this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
        this.random = options.random ?? Math.random;
        this.now = options.now ?? (() => globalThis.performance?.now() ?? Date.now());
        this.openSocket =
            options.socket ??
                ((url) => {
                    const Ctor = globalThis.WebSocket;
                    if (!Ctor)
                        throw new Error("no WebSocket in this environment: pass options.socket");
                    return new Ctor(url);
                });
        this.seq = options.lastSeq ?? 0;
        this.hasSeq = options.lastSeq !== undefined;
    }
    /** The current connection state. */
    get state() {
        return this.stateValue;
    }
    /** The last stored seq seen (persist it to resume after a page reload). */
    get lastSeq() {
        return this.seq;
    }
    /** The latest `welcome`, if any. */
    get welcome() {
        return this.welcomeValue;
    }
    /**
     * Calls `listener` with the current state now and on every change;
     * returns the unsubscribe function.
     */
    subscribe(listener) {
        this.stateListeners.add(listener);
        listener(this.stateValue);
        return () => {
            this.stateListeners.delete(listener);
        };
    }
    /** Starts connecting (idempotent). */
    connect() {
        if (this.stateValue !== "idle")
            return;
        void this.open();
    }
    /** Closes for good: pending submits and pings are rejected. */
    close() {
        if (this.stateValue === "stopped")
            return;
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
    submit(job, options = {}) {
        if (this.stateValue === "stopped") {
            return Promise.reject(new SluiceError("stopped", "the client is stopped"));
        }
        const ref = `r${++this.refCounter}`;
        // Kinds are open on the wire; `JobRequest` names only the built-in ones.
        const frame = { type: "submit", ref, job: job };
        return new Promise((resolve, reject) => {
            this.submits.set(ref, { resolve, reject, onEvent: options.onEvent, sent: false, frame });
            this.sendOrQueue(frame);
        });
    }
    /** Asks the server to cancel a job; its `cancelled` event follows if it had not ended. */
    cancel(jobId) {
        if (this.stateValue === "stopped")
            return;
        this.sendOrQueue({ type: "cancel", job_id: jobId });
    }
    /** Round-trip time of a `ping`/`pong`, in ms. Rejects when not connected. */
    ping(timeoutMs = 10000) {
        if (this.stateValue !== "open" || !this.socket) {
            return Promise.reject(new SluiceError("disconnected", "not connected"));
        }
        const id = ++this.pingCounter;
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                if (this.pings.delete(id))
                    reject(new SluiceError("timeout", "no pong"));
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
    onJob(jobId, listener) {
        const record = this.record(jobId);
        for (const event of record.events)
            listener(event);
        if (record.ended)
            return () => { };
        record.listeners.add(listener);
        return () => {
            record.listeners.delete(listener);
        };
    }
    /** The events of `jobId` as an async iterator that ends after the terminal event. */
    events(jobId) {
        const buffered = [];
        let wake = null;
        let finished = false;
        const unsubscribe = this.onJob(jobId, (event) => {
            buffered.push(event);
            wake?.();
        });
        const iterator = {
            next: async () => {
                while (buffered.length === 0 && !finished) {
                    await new Promise((resolve) => (wake = resolve));
                    wake = null;
                }
                const event = buffered.shift();
                if (event === undefined)
                    return { done: true, value: undefined };
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
    onMessages(listener) {
        const untyped = listener;
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
    messages() {
        const buffered = [];
        let wake = null;
        let finished = false;
        const unsubscribe = this.onMessages((message) => {
            buffered.push(message);
            wake?.();
        });
        const iterator = {
            next: async () => {
                while (buffered.length === 0 && !finished) {
                    await new Promise((resolve) => (wake = resolve));
                    wake = null;
                }
                const message = buffered.shift();
                if (message === undefined)
                    return { done: true, value: undefined };
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
    setState(state) {
        if (this.stateValue === state)
            return;
        this.stateValue = state;
        for (const listener of [...this.stateListeners])
            listener(state);
    }
    async open() {
        this.setState("connecting");
        const generation = ++this.generation;
        let token;
        try {
            token = await this.options.token();
        }
        catch (e) {
            if (generation !== this.generation || this.stateValue === "stopped")
                return;
            this.options.onError?.(new SluiceError("disconnected", `token provider failed: ${String(e)}`));
            this.scheduleReconnect("retry");
            return;
        }
        if (generation !== this.generation || this.stateValue === "stopped")
            return;
        let socket;
        try {
            socket = this.openSocket(this.options.url);
        }
        catch (e) {
            this.options.onError?.(new SluiceError("disconnected", `cannot open socket: ${String(e)}`));
            this.scheduleReconnect("retry");
            return;
        }
        this.socket = socket;
        this.currentToken = token;
        const mine = () => this.socket === socket && this.stateValue !== "stopped";
        socket.onopen = () => {
            if (!mine())
                return;
            this.resumeSent = this.hasSeq;
            const hello = this.hasSeq
                ? {
                    type: "hello",
                    token,
                    resume: this.session ? { session: this.session, after: this.seq } : { after: this.seq },
                }
                : { type: "hello", token };
            socket.send(JSON.stringify(hello));
        };
        socket.onmessage = (ev) => {
            if (!mine() || typeof ev.data !== "string")
                return;
            let frame;
            try {
                frame = JSON.parse(ev.data);
            }
            catch {
                return;
            }
            this.handle(frame);
        };
        socket.onerror = () => {
            // A close event always follows; it decides.
        };
        socket.onclose = (ev) => {
            if (!mine())
                return;
            this.socket = null;
            this.onClosed(ev.code, ev.reason);
        };
        const timeout = this.options.connectTimeoutMs ?? 10000;
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
    clearRefreshTimer() {
        if (this.refreshTimer !== null) {
            clearTimeout(this.refreshTimer);
            this.refreshTimer = null;
        }
    }
    /** Sends `refresh` with a fresh token shortly before `exp`. */
    scheduleRefresh(exp) {
        this.clearRefreshTimer();
        if (exp === null)
            return;
        const wall = this.options.wallClock ?? Date.now;
        const socket = this.socket;
        this.refreshTimer = setTimeout(() => {
            this.refreshTimer = null;
            void (async () => {
                let token;
                try {
                    token = await this.options.token();
                }
                catch (e) {
                    // No fresh token: the server closes with 4001 at expiry, and the
                    // reconnect asks again.
                    this.options.onError?.(new SluiceError("disconnected", `token provider failed: ${String(e)}`));
                    return;
                }
                if (this.socket !== socket || this.stateValue !== "open")
                    return;
                this.currentToken = token;
                this.send({ type: "refresh", token });
            })();
        }, refreshDelayMs(exp, wall()));
    }
    clearConnectTimer() {
        if (this.connectTimer !== null) {
            clearTimeout(this.connectTimer);
            this.connectTimer = null;
        }
    }
    onClosed(code, reason) {
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
    scheduleReconnect(action) {
        if (this.stateValue === "stopped")
            return;
        this.setState("reconnecting");
        const delay = action === "retry-now" ? 0 : backoffDelay(this.attempt, this.backoff, this.random);
        this.attempt += 1;
        this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            if (this.stateValue !== "reconnecting")
                return;
            this.reconnects += 1;
            void this.open();
        }, delay);
    }
    stop(error) {
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
    requeueUnanswered() {
        for (const pending of this.submits.values()) {
            if (pending.sent) {
                pending.sent = false;
                this.queued.push(pending.frame);
            }
        }
    }
    /** Rejects submits already sent and pings on a socket that closed. */
    failInFlight(error) {
        for (const [ref, pending] of this.submits) {
            if (pending.sent) {
                this.submits.delete(ref);
                pending.reject(error);
            }
        }
        this.failPings(error);
    }
    failPings(error) {
        for (const [id, pending] of this.pings) {
            this.pings.delete(id);
            pending.reject(error);
        }
    }
    sendOrQueue(frame) {
        if (this.stateValue === "open" && this.socket)
            this.send(frame);
        else
            this.queued.push(frame);
    }
    send(frame) {
        if (frame.type === "submit") {
            const pending = this.submits.get(frame.ref);
            if (pending)
                pending.sent = true;
        }
        this.socket?.send(JSON.stringify(frame));
    }
    handle(frame) {
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
                if (!pending)
                    return;
                this.submits.delete(frame.ref);
                // Register before resolving: the job's events may follow at once.
                if (pending.onEvent)
                    this.onJob(frame.job_id, pending.onEvent);
                else
                    this.record(frame.job_id);
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
                }
                else {
                    this.options.onError?.(error);
                }
                return;
            }
        }
    }
    onWelcome(welcome) {
        this.clearConnectTimer();
        this.welcomeValue = welcome;
        this.session = welcome.session;
        this.attempt = 0;
        if (this.resumeSent && !welcome.resumed) {
            const gap = { after: this.seq, lastSeq: welcome.last_seq };
            this.seq = welcome.last_seq;
            this.options.onGap?.(gap);
        }
        else if (!this.resumeSent) {
            // A fresh start: the stream continues after the server's newest seq.
            this.seq = welcome.last_seq;
        }
        this.hasSeq = true;
        this.setState("open");
        this.scheduleRefresh(this.currentToken === null ? null : tokenExpiry(this.currentToken));
        this.options.onWelcome?.(welcome);
        const queued = this.queued.splice(0);
        for (const frame of queued)
            this.send(frame);
    }
    onEventFrame(frame) {
        const event = { ...frame };
        if (event.status !== "progress") {
            if (event.seq <= this.seq) {
                this.duplicatesDropped += 1;
                return;
            }
            this.seq = event.seq;
        }
        const record = this.record(event.job_id);
        if (record.ended)
            return;
        record.events.push(event);
        if (isTerminal(event.status)) {
            record.ended = true;
            this.endedOrder.push(event.job_id);
            const keep = this.options.keepEndedJobs ?? 1000;
            while (this.endedOrder.length > keep) {
                const old = this.endedOrder.shift();
                if (old !== undefined)
                    this.jobs.delete(old);
            }
        }
        this.options.onEvent?.(event);
        for (const listener of [...record.listeners])
            listener(event);
        if (record.ended)
            record.listeners.clear();
    }
    onMessageFrame(frame) {
        if (frame.seq <= this.seq) {
            this.duplicatesDropped += 1;
            return;
        }
        this.seq = frame.seq;
        const message = { ...frame };
        this.options.onMessage?.(message);
        for (const listener of [...this.messageListeners])
            listener(message);
    }
    record(jobId) {
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
export function wsUrl(path, base) {
    const url = new URL(path, base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    return url.toString();
}
