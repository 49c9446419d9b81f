-- Idempotency keys of `POST /v1/jobs` (PROTOCOL.md section 4), per user,
-- honoured for 24 hours: a repeat answers the first job and creates
-- nothing. `body_hash` (sha256 of the request body) tells a repeat from a
-- different request under the same key. A key goes with its job: when a
-- submission is withdrawn (no broker confirm) or the job is pruned, the key
-- is free again. The key is written before its job in the same transaction
-- (so a concurrent repeat waits on it), hence the deferred reference.
CREATE TABLE job_keys (
    user_id         text        NOT NULL,
    idempotency_key text        NOT NULL,
    job_id          uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE
                                DEFERRABLE INITIALLY DEFERRED,
    body_hash       bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX job_keys_created ON job_keys (created_at);
CREATE INDEX job_keys_job ON job_keys (job_id);
