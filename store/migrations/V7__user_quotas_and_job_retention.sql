-- Per-user quotas are checked by the statement that records a job: these
-- partial indexes keep their counts to the user's own unfinished jobs.
CREATE INDEX jobs_user_active ON jobs (user_id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_user_created ON jobs (user_id) WHERE status = 'created';
-- Ended jobs are pruned after runner.job_retention_hours, oldest first.
CREATE INDEX jobs_ended ON jobs (updated_at) WHERE status IN ('done', 'failed', 'cancelled');
