-- Cancellation of running jobs, and listing a user's visible jobs.
ALTER TABLE jobs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
DROP INDEX jobs_user_created;
CREATE INDEX jobs_user_visible ON jobs (user_id, created_at DESC, id DESC) WHERE NOT hidden;
