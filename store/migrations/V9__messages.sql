-- Messages that backends publish to users (docs/architecture.md,
-- "Publishing"). A message is a row of the event log like a job event: the
-- user's next seq, the frame clients receive, the same outbox flag, resume
-- and retention. Its row has a message id instead of a job and a status.
ALTER TABLE events
    ALTER COLUMN job_id DROP NOT NULL,
    ALTER COLUMN status DROP NOT NULL,
    ADD COLUMN message_id text;
-- Every row written before this migration is a job event, so the check
-- holds for them; NOT VALID + VALIDATE checks them without the table lock
-- a plain ADD CONSTRAINT takes for the scan.
ALTER TABLE events ADD CONSTRAINT events_job_or_message CHECK (
    (job_id IS NOT NULL AND status IS NOT NULL AND message_id IS NULL)
    OR (job_id IS NULL AND status IS NULL AND message_id IS NOT NULL)) NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_job_or_message;

-- Idempotency keys of publications, per user, honoured for 24 hours: a
-- repeat answers the first seq and publishes nothing. `data_hash` tells a
-- repeat from a different message under the same key.
CREATE TABLE publications (
    user_id         text        NOT NULL,
    idempotency_key text        NOT NULL,
    seq             bigint      NOT NULL,
    data_hash       bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX publications_created ON publications (created_at);

-- Publishes `p_data` to `p_user`: appends it to the user's log with the
-- user's next seq and returns that seq. Called inside the caller's own
-- transaction, so the message exists if and only if that transaction
-- commits; pg_notify (also transactional) then wakes the runners' message
-- relay, which sends it to every gateway.
--
-- Refusals raise SQLSTATE 22023 (invalid_parameter_value) naming the
-- argument, or SLI01 when the key was used for different data within 24 h.
-- The user's user_seq row lock serialises the user's publications and job
-- events, as events.rs does: seq order is commit order.
CREATE FUNCTION publish(p_user text, p_data jsonb, p_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
    v_hash bytea;
    v_seq bigint;
    v_prev publications%ROWTYPE;
    v_text text;
    v_id text;
BEGIN
    IF p_user IS NULL OR octet_length(p_user) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'user_id must be 1 to 200 bytes' USING ERRCODE = '22023';
    END IF;
    IF p_data IS NULL THEN
        RAISE EXCEPTION 'data must be a JSON value (JSON null is one), not SQL NULL'
            USING ERRCODE = '22023';
    END IF;
    v_text := p_data::text;
    -- A hard ceiling below every session's 1 MiB outgoing queue; the HTTP
    -- API refuses past gateway.max_publish_bytes before it gets here.
    IF octet_length(v_text) > 262144 THEN
        RAISE EXCEPTION 'data is % bytes; at most 262144', octet_length(v_text)
            USING ERRCODE = '22023';
    END IF;
    IF p_key IS NOT NULL AND (octet_length(p_key) NOT BETWEEN 1 AND 128
                              OR p_key !~ '^[\x21-\x7e]+$') THEN
        RAISE EXCEPTION 'idempotency_key must be 1 to 128 printable ASCII characters'
            USING ERRCODE = '22023';
    END IF;
    IF p_key IS NOT NULL THEN
        v_hash := sha256(convert_to(v_text, 'UTF8'));
        -- Waits for a concurrent publication with the same key to commit
        -- or roll back, then sees it (or not).
        INSERT INTO publications (user_id, idempotency_key, seq, data_hash)
        VALUES (p_user, p_key, 0, v_hash)
        ON CONFLICT (user_id, idempotency_key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO v_prev FROM publications
            WHERE user_id = p_user AND idempotency_key = p_key FOR UPDATE;
            IF v_prev.created_at > now() - interval '24 hours' THEN
                IF v_prev.data_hash <> v_hash THEN
                    RAISE EXCEPTION 'idempotency_key % was used for different data', left(p_key, 128)
                        USING ERRCODE = 'SLI01';
                END IF;
                RETURN v_prev.seq;
            END IF;
            -- Older than the window: the key is free again.
            UPDATE publications SET data_hash = v_hash, created_at = now()
            WHERE user_id = p_user AND idempotency_key = p_key;
        END IF;
    END IF;

    INSERT INTO user_seq (user_id, last_seq) VALUES (p_user, 1)
    ON CONFLICT (user_id) DO UPDATE SET last_seq = user_seq.last_seq + 1
    RETURNING last_seq INTO v_seq;
    v_id := coalesce(p_key, gen_random_uuid()::text);
    INSERT INTO events (user_id, seq, message_id, frame)
    VALUES (p_user, v_seq, v_id,
            '{"type":"message","seq":' || v_seq || ',"data":' || v_text
            || ',"id":' || to_json(v_id)::text || '}');
    IF p_key IS NOT NULL THEN
        UPDATE publications SET seq = v_seq
        WHERE user_id = p_user AND idempotency_key = p_key;
    END IF;
    PERFORM pg_notify(current_schema() || '_messages', '');
    RETURN v_seq;
END
$$;

REVOKE ALL ON FUNCTION publish(text, jsonb, text) FROM PUBLIC;
