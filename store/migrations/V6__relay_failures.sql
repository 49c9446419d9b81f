-- How often the outbox relay failed to publish a row while the broker took
-- its neighbours: a row that fails for a reason of its own is set aside
-- after a few such rounds instead of blocking the rows behind it.
ALTER TABLE events ADD COLUMN relay_failures smallint NOT NULL DEFAULT 0;
ALTER TABLE job_outbox ADD COLUMN relay_failures smallint NOT NULL DEFAULT 0;
