-- The kinds each runner serves (docs/architecture.md, "Open kinds"). A
-- runner writes its rows at start and refreshes `heartbeat_at` while it
-- lives; gateways read the rows of their own AMQP prefix (the runners that
-- consume their queues) to validate submissions and answer GET /v1/kinds.
-- A runner that stops leaves its rows to age out, so a restart does not
-- refuse the jobs that will wait for it in the queue.
CREATE TABLE runner_kinds (
    runner_id    uuid        NOT NULL,
    amqp_prefix  text        NOT NULL,
    kind         text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    description  text        NOT NULL,
    args_schema  jsonb       NOT NULL,
    timeout_ms   bigint      NOT NULL CHECK (timeout_ms > 0),
    heartbeat_ms bigint      NOT NULL CHECK (heartbeat_ms > 0),
    announced_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (runner_id, kind)
);
CREATE INDEX runner_kinds_served ON runner_kinds (amqp_prefix, kind, heartbeat_at DESC);
