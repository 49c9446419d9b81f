/**
 * A client frame in owned, encodable form: what a client sends. The
 * gateway reads frames with [`ClientFrame::decode`]; a test keeps the two
 * in agreement, and the TypeScript client's types are generated from this.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "OutgoingFrame".
 */
export type OutgoingFrame = {
    /**
     * Where the client's event stream stopped, when reconnecting.
     */
    resume?: Resume | null;
    /**
     * JWT; may be omitted when the upgrade request carried `Authorization`.
     */
    token?: string | null;
    type: "hello";
} | {
    /**
     * Echoed in the `pong`.
     */
    id: number;
    type: "ping";
} | {
    /**
     * The job: its kind and args.
     */
    job: {
        args: BatchUpsertArgs;
        kind: "batch_upsert";
    } | {
        args: SleepArgs;
        kind: "sleep";
    };
    /**
     * The client's correlation string, at most 64 characters.
     */
    ref: string;
    type: "submit";
} | {
    /**
     * The job to cancel.
     */
    job_id: string;
    type: "cancel";
} | {
    /**
     * The JWT.
     */
    token: string;
    type: "refresh";
};
/**
 * Why a request or a job failed; clients branch on this, never on messages.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "ErrorCode".
 */
export type ErrorCode = "bad_request" | "unknown_kind" | "bad_args" | "bad_id" | "not_found" | "unavailable" | "overloaded" | "timeout" | "cancelled" | "internal" | "unauthorized" | "conflict" | "too_large" | "rate_limited" | "no_route" | "forbidden" | "idempotency_mismatch";
/**
 * Where a job is in its lifecycle, as seen in `event` frames.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "EventStatus".
 */
export type EventStatus = "queued" | "running" | "progress" | "done" | "failed" | "cancelled";
/**
 * The job kinds this version of Sluice runs (PROTOCOL.md section 2).
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "JobKind".
 */
export type JobKind = "batch_upsert" | "sleep";
/**
 * A job as a client asks for it: `{kind, args}` with the args typed by
 * kind. The gateway reads submits with [`crate::ClientFrame::decode`]
 * (args kept raw); this owned form is for clients, and the TypeScript
 * client's types are generated from it.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "JobRequest".
 */
export type JobRequest = {
    args: BatchUpsertArgs;
    kind: "batch_upsert";
} | {
    args: SleepArgs;
    kind: "sleep";
};
/**
 * A server-to-client frame; encoded once and sent as text.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "ServerFrame".
 */
export type ServerFrame = {
    /**
     * How often the server pings; two silent intervals close the session.
     */
    heartbeat_ms: number;
    /**
     * The user's newest stored seq at this moment.
     */
    last_seq: number;
    /**
     * Whether every stored event after the client's `resume.after`
     * follows (false: some were pruned, or this is a fresh start).
     */
    resumed: boolean;
    /**
     * This session's id, for logs.
     */
    session: string;
    type: "welcome";
    /**
     * The user the token names.
     */
    user: string;
} | {
    /**
     * The new token's expiry, seconds since the epoch.
     */
    exp: number;
    type: "refreshed";
} | {
    /**
     * The `ping`'s id.
     */
    id: number;
    type: "pong";
} | {
    /**
     * The id the gateway gave the job.
     */
    job_id: string;
    /**
     * The submit's `ref`.
     */
    ref: string;
    type: "accepted";
} | (EventFrame & {
    type: "event";
}) | {
    /**
     * What the backend published: any JSON value.
     */
    data: {
        [k: string]: unknown;
    };
    /**
     * The publication's id: its idempotency key when it had one, a
     * UUID otherwise. Equal ids on two messages mean one publication.
     */
    id: string;
    /**
     * Its place in the user's log, shared with job events.
     */
    seq: number;
    type: "message";
} | {
    /**
     * Why a request or a job failed; clients branch on this, never on messages.
     */
    code: "bad_request" | "unknown_kind" | "bad_args" | "bad_id" | "not_found" | "unavailable" | "overloaded" | "timeout" | "cancelled" | "internal" | "unauthorized" | "conflict" | "too_large" | "rate_limited" | "no_route" | "forbidden" | "idempotency_mismatch";
    /**
     * A human-readable explanation.
     */
    message: string;
    /**
     * The `ref` of the submit it answers, if it answers one.
     */
    ref?: string | null;
    /**
     * With `rate_limited`: how long to wait before trying again (ms).
     */
    retry_after_ms?: number | null;
    type: "error";
};
/**
 * Every type a client needs, as one root so each lands in `$defs`.
 */
export interface SluiceProtocol {
    batch_upsert_args: BatchUpsertArgs;
    client_frame: OutgoingFrame;
    error_code: ErrorCode;
    event_status: EventStatus;
    job_kind: JobKind;
    job_request: JobRequest;
    server_frame: ServerFrame;
    sleep_args: SleepArgs;
}
/**
 * Args of `batch_upsert`: rows to upsert into an allow-listed table.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "BatchUpsertArgs".
 */
export interface BatchUpsertArgs {
    /**
     * The conflict key columns (a unique index must cover them).
     *
     * @minItems 1
     */
    key: [string, ...string[]];
    /**
     * The rows: objects that all have the first row's columns.
     */
    rows: {
        [k: string]: unknown;
    }[];
    /**
     * Target table; must be in the runner's `tables` allow-list.
     */
    table: string;
}
/**
 * `hello.resume`: where the client's event stream stopped.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "Resume".
 */
export interface Resume {
    /**
     * The last stored `seq` the client saw.
     */
    after: number;
    /**
     * The session id the client had; informational, seqs are per user.
     */
    session?: string | null;
}
/**
 * Args of `sleep`.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "SleepArgs".
 */
export interface SleepArgs {
    /**
     * How long to hold the connection in `pg_sleep`.
     */
    ms: number;
}
/**
 * The body of an `event` frame (without its `type` tag).
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "EventFrame".
 */
export interface EventFrame {
    /**
     * For `failed`: why.
     */
    error?: JobError | null;
    /**
     * The job it reports on.
     */
    job_id: string;
    /**
     * For `progress`: how far it got.
     */
    progress?: Progress | null;
    /**
     * For `done`: the handler's result.
     */
    result?: {
        [k: string]: unknown;
    };
    /**
     * The user's next seq for stored events; 0 for `progress`.
     */
    seq: number;
    /**
     * Where a job is in its lifecycle, as seen in `event` frames.
     */
    status: "queued" | "running" | "progress" | "done" | "failed" | "cancelled";
}
/**
 * `event.error`, also stored on a failed job.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "JobError".
 */
export interface JobError {
    /**
     * Why a request or a job failed; clients branch on this, never on messages.
     */
    code: "bad_request" | "unknown_kind" | "bad_args" | "bad_id" | "not_found" | "unavailable" | "overloaded" | "timeout" | "cancelled" | "internal" | "unauthorized" | "conflict" | "too_large" | "rate_limited" | "no_route" | "forbidden" | "idempotency_mismatch";
    /**
     * A human-readable explanation (may quote the offending value).
     */
    message: string;
}
/**
 * `event.progress`.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "Progress".
 */
export interface Progress {
    /**
     * Units done so far.
     */
    done: number;
    /**
     * Units in all.
     */
    total: number;
}
