-- Only the statuses the job repository writes (store/src/status.rs).
ALTER TABLE jobs ADD CONSTRAINT jobs_status_known
    CHECK (status IN ('created', 'queued', 'running', 'done', 'failed', 'cancelled'));
