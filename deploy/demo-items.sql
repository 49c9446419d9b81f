-- The demo table `batch_upsert` writes in development and in the tests
-- (runner.tables = ["items"] by default). Created by deploy/provision.sh,
-- which start.sh and test.sh run; never by Sluice's own migrations, so it
-- does not ship to production. An application lists its own tables instead.
CREATE TABLE IF NOT EXISTS public.items (
    id         bigint PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- batch_upsert runs as the runner's role, which may write only what the
-- application grants it (here the provisioning's sluice_runner).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'sluice_runner') THEN
        GRANT SELECT, INSERT, UPDATE ON public.items TO sluice_runner;
    END IF;
END
$$;
