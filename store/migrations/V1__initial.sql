-- Jobs, per-user event sequences and the event log (also the outbox).
-- The demo table `items` is created by the development and test setup
-- (deploy/demo-items.sql), never here. See docs/architecture.md for why each table exists.

CREATE TABLE jobs (
    id          uuid PRIMARY KEY,
    user_id     text        NOT NULL,
    kind        text        NOT NULL,
    args        jsonb,
    status      text        NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    progress    jsonb,
    result      jsonb,
    error       jsonb,
    hidden      boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_user_created ON jobs (user_id, created_at DESC);

-- One row per user; its row lock serialises a user's event commits so that
-- seq order equals commit order (resume relies on it).
CREATE TABLE user_seq (
    user_id  text   PRIMARY KEY,
    last_seq bigint NOT NULL
);

-- Every stored event, exactly as sent to clients (`frame`), kept for resume.
-- Rows with published = false form the outbox the relay drains.
CREATE TABLE events (
    user_id    text        NOT NULL,
    seq        bigint      NOT NULL,
    job_id     uuid        NOT NULL,
    status     text        NOT NULL,
    frame      text        NOT NULL,
    published  boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX events_outbox ON events (created_at) WHERE NOT published;
CREATE INDEX events_created ON events (created_at);
