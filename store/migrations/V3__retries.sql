-- The last transient error of a job being retried, for dead-lettering and
-- operators; the user-visible `error` is only set when the job ends.
ALTER TABLE jobs ADD COLUMN last_error text;
