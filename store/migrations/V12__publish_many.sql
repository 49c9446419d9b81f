-- One message to many users in one set-based statement, for publications
-- without an idempotency key (POST /v1/publish to up to 1,000 users):
-- the same rows and frames as publish(), one per user, each with an id of
-- its own, but one user_seq upsert and one events insert for them all
-- instead of a function call, three statements and a notification per
-- user. Users are deduplicated and taken in byte order (COLLATE "C"), the lock order
-- the HTTP API uses too, so concurrent calls cannot deadlock.
CREATE FUNCTION publish_many(p_users text[], p_data jsonb)
RETURNS TABLE (user_id text, seq bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_text text;
BEGIN
    IF p_users IS NULL OR cardinality(p_users) NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'users must list 1 to 1000 user ids' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT FROM unnest(p_users) AS u
               WHERE u IS NULL OR octet_length(u) NOT BETWEEN 1 AND 200) THEN
        RAISE EXCEPTION 'user_id must be 1 to 200 bytes' USING ERRCODE = '22023';
    END IF;
    IF p_data IS NULL THEN
        RAISE EXCEPTION 'data must be a JSON value (JSON null is one), not SQL NULL'
            USING ERRCODE = '22023';
    END IF;
    v_text := p_data::text;
    IF octet_length(v_text) > 262144 THEN
        RAISE EXCEPTION 'data is % bytes; at most 262144', octet_length(v_text)
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH seqs AS (
        INSERT INTO user_seq AS s (user_id, last_seq)
        SELECT u, 1 FROM (SELECT DISTINCT u FROM unnest(p_users) AS u) AS d ORDER BY u COLLATE "C"
        ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq + 1
        RETURNING s.user_id, s.last_seq
    ), messages AS (
        SELECT seqs.user_id, seqs.last_seq, gen_random_uuid()::text AS id FROM seqs
    ), stored AS (
        INSERT INTO events (user_id, seq, message_id, frame)
        SELECT m.user_id, m.last_seq, m.id,
               '{"type":"message","seq":' || m.last_seq || ',"data":' || v_text
               || ',"id":' || to_json(m.id)::text || '}'
        FROM messages AS m
        RETURNING events.user_id, events.seq
    )
    SELECT stored.user_id, stored.seq FROM stored ORDER BY stored.user_id;
    PERFORM pg_notify(current_schema() || '_messages', '');
END
$$;

REVOKE ALL ON FUNCTION publish_many(text[], jsonb) FROM PUBLIC;
