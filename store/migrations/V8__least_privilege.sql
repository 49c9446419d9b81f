-- Least privilege (docs/architecture.md, "Database roles"). The gateway's
-- role may not change a job's status: the two moves it makes, `created` to
-- `queued` (run) and back (an unconfirmed publish), are these functions,
-- which run as the schema's owner and do nothing else. The grants that
-- say who may call them are applied by store/src/grants.rs after every
-- migration run, for the roles named in the configuration.
-- SET search_path FROM CURRENT: the migrating connection's path, Sluice's
-- schema, fixed into the function so that no caller can redirect it.

CREATE FUNCTION queue_created(p_job uuid, p_user text, p_body bytea, p_max_active bigint)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
    WITH job AS (
        UPDATE jobs SET status = 'queued', updated_at = now()
        WHERE id = p_job AND user_id = p_user AND status = 'created' AND NOT cancel_requested
          AND (SELECT count(*) FROM jobs
               WHERE user_id = p_user AND status IN ('queued', 'running')) < p_max_active
        RETURNING id
    ), entry AS (
        INSERT INTO job_outbox (job_id, body) SELECT id, p_body FROM job RETURNING job_id
    )
    SELECT EXISTS (SELECT 1 FROM entry)
$$;

CREATE FUNCTION unqueue(p_job uuid)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
    WITH entry AS (DELETE FROM job_outbox WHERE job_id = p_job), job AS (
        UPDATE jobs SET status = 'created', updated_at = now()
        WHERE id = p_job AND status = 'queued' AND attempts = 0
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM job)
$$;

REVOKE ALL ON FUNCTION queue_created(uuid, text, bytea, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION unqueue(uuid) FROM PUBLIC;

-- A cancel of a job no runner has taken is recorded by the gateway as a
-- request; a runner ends it (its control message at once, its sweep within
-- runner.cancel_poll_ms). This index keeps the sweep to those few rows.
CREATE INDEX jobs_unstarted_cancels ON jobs (updated_at)
    WHERE cancel_requested AND status IN ('created', 'queued');
