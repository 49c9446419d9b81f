/* Generated from schema/protocol.schema.json (the Rust `proto` crate) by
 * scripts/gen-types.mjs. Do not edit: run `npm run gen`. */

/**
 * A client frame in owned, encodable form: what a client sends. The
 * gateway reads frames with [`ClientFrame::decode`]; a test keeps the two
 * in agreement, and the TypeScript client's types are generated from this.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "OutgoingFrame".
 */
export type OutgoingFrame =
  | {
      /**
       * Where the client's event stream stopped, when reconnecting.
       */
      resume?: Resume | null;
      /**
       * JWT; may be omitted when the upgrade request carried `Authorization`.
       */
      token?: string | null;
      type: "hello";
    }
  | {
      id: number;
      type: "ping";
    }
  | {
      job: JobRequest;
      /**
       * The client's correlation string, at most 64 characters.
       */
      ref: string;
      type: "submit";
    }
  | {
      job_id: string;
      type: "cancel";
    };
/**
 * A job as a client asks for it: `{kind, args}` with the args typed by
 * kind. The gateway reads submits with [`crate::ClientFrame::decode`]
 * (args kept raw); this owned form is for clients, and the TypeScript
 * client's types are generated from it.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "JobRequest".
 */
export type JobRequest =
  | {
      args: BatchUpsertArgs;
      kind: "batch_upsert";
    }
  | {
      args: SleepArgs;
      kind: "sleep";
    };
/**
 * Why a request or a job failed; clients branch on this, never on messages.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "ErrorCode".
 */
export type ErrorCode =
  | "bad_request"
  | "unknown_kind"
  | "bad_args"
  | "bad_id"
  | "not_found"
  | "unavailable"
  | "overloaded"
  | "timeout"
  | "cancelled"
  | "internal"
  | "unauthorized"
  | "conflict"
  | "too_large"
  | "rate_limited"
  | "no_route";
/**
 * Where a job is in its lifecycle, as seen in `event` frames.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "EventStatus".
 */
export type EventStatus = ("queued" | "running" | "done" | "failed" | "cancelled") | "progress";
/**
 * The job kinds this version of Sluice runs (PROTOCOL.md section 2).
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "JobKind".
 */
export type JobKind = "batch_upsert" | "sleep";
/**
 * A server-to-client frame; encoded once and sent as text.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "ServerFrame".
 */
export type ServerFrame =
  | {
      heartbeat_ms: number;
      last_seq: number;
      resumed: boolean;
      session: string;
      type: "welcome";
      user: string;
    }
  | {
      id: number;
      type: "pong";
    }
  | {
      job_id: string;
      ref: string;
      type: "accepted";
    }
  | (EventFrame & {
      type: "event";
    })
  | {
      code: ErrorCode;
      message: string;
      ref?: string | null;
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
 * Args of `batch_upsert`, owned (the client's side of [`BatchUpsertHead`]).
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "BatchUpsertArgs".
 */
export interface BatchUpsertArgs {
  /**
   * The conflict key columns (a unique index must cover them).
   */
  key: string[];
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
  error?: JobError | null;
  job_id: string;
  progress?: Progress | null;
  result?: unknown;
  /**
   * The user's next seq for stored events; 0 for `progress`.
   */
  seq: number;
  status: EventStatus;
}
/**
 * `event.error`, also stored on a failed job.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "JobError".
 */
export interface JobError {
  code: ErrorCode;
  message: string;
}
/**
 * `event.progress`.
 *
 * This interface was referenced by `SluiceProtocol`'s JSON-Schema
 * via the `definition` "Progress".
 */
export interface Progress {
  done: number;
  total: number;
}
