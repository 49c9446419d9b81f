-- The submission outbox: a job recorded for the broker but not yet
-- confirmed by it. The entry is written in the same statement as the job
-- row, deleted once the broker confirmed the message, and published by the
-- runners' relay when the process that wrote it died first.
CREATE TABLE job_outbox (
    job_id     uuid        PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    body       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_outbox_created ON job_outbox (created_at);
