//! Who may do what in Sluice's schema: the grants and row policies for the
//! gateway's and the runner's database roles, applied after every migration
//! run by the schema's owner (`sluice-jobs migrate`).
//!
//! The gateway records, reads, cancels and hides jobs; it may not write an
//! event, a sequence, a job's outcome or its status (beyond recording a job
//! as `created` or `queued`, and the two moves between them, which are the
//! owner's functions `queue_created` and `unqueue`), except a backend's
//! message, which it appends through the owner's function `publish` (the
//! one an application's own role may be granted too). The runner does
//! everything else. Neither role needs CREATE on anything. See
//! docs/architecture.md, "Database roles".
//!
//! Applied from scratch each time (revoke, then grant), so the grants are
//! exactly these whatever an earlier version granted, and a table a new
//! migration adds is covered by the next run.

use tokio_postgres::types::Type;

/// The roles to grant to; empty names are skipped.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    /// The schema the roles are granted in.
    pub schema: &'a str,
    /// The gateway's login role (`database.gateway_role`).
    pub gateway: &'a str,
    /// The runner's login role (`database.runner_role`).
    pub runner: &'a str,
}

/// What [`apply`] did for each role.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The roles granted to.
    pub granted: Vec<String>,
    /// The roles named but not found in the cluster, so left alone.
    pub missing: Vec<String>,
}

/// Applies the grants and the jobs table's row policies in one
/// transaction. Names were checked to be plain identifiers
/// (`DatabaseConfig::validate`), so they are spliced unquoted.
pub async fn apply(
    client: &mut tokio_postgres::Client,
    roles: Roles<'_>,
) -> Result<Applied, tokio_postgres::Error> {
    let mut applied = Applied::default();
    let tx = client.transaction().await?;
    let mut sql = String::new();
    let exists = |name: &str| {
        let tx = &tx;
        let name = name.to_owned();
        async move {
            let row = tx
                .query_typed_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                    &[(&name, Type::TEXT)],
                )
                .await?;
            Ok::<bool, tokio_postgres::Error>(row.get(0))
        }
    };
    let schema = roles.schema;
    let gateway = !roles.gateway.is_empty() && exists(roles.gateway).await?;
    let runner = !roles.runner.is_empty() && exists(roles.runner).await?;
    for (name, found) in [(roles.gateway, gateway), (roles.runner, runner)] {
        if name.is_empty() {
            continue;
        }
        if found {
            applied.granted.push(name.to_owned());
        } else {
            applied.missing.push(name.to_owned());
        }
    }
    for name in [roles.gateway, roles.runner] {
        if name.is_empty() || !applied.granted.iter().any(|g| g == name) {
            continue;
        }
        sql.push_str(&format!(
            "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {name};
             REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema} FROM {name};
             GRANT USAGE ON SCHEMA {schema} TO {name};\n"
        ));
    }
    if runner {
        let name = roles.runner;
        sql.push_str(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {name};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {name};\n"
        ));
    }
    // Row security on jobs: the gateway inserts only unstarted jobs and
    // deletes only a submission it withdraws; its column grants already
    // keep it from `status`, `result` and `error`. The owner (and its
    // members) bypass the policies; a role with no policy sees no row.
    // The DROPs of policies a first run does not have would each log a
    // NOTICE.
    sql.push_str("SET LOCAL client_min_messages = warning;\n");
    sql.push_str(&format!(
        "DROP POLICY IF EXISTS gateway_reads ON {schema}.jobs;
         DROP POLICY IF EXISTS gateway_records ON {schema}.jobs;
         DROP POLICY IF EXISTS gateway_marks ON {schema}.jobs;
         DROP POLICY IF EXISTS gateway_withdraws ON {schema}.jobs;
         DROP POLICY IF EXISTS runner_all ON {schema}.jobs;\n"
    ));
    if gateway {
        let name = roles.gateway;
        sql.push_str(&format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {name};
             GRANT INSERT (id, user_id, kind, status, args), DELETE ON {schema}.jobs TO {name};
             GRANT UPDATE (hidden, cancel_requested, updated_at) ON {schema}.jobs TO {name};
             GRANT INSERT, DELETE ON {schema}.job_outbox TO {name};
             GRANT INSERT, UPDATE ON {schema}.job_keys TO {name};
             GRANT EXECUTE ON FUNCTION {schema}.queue_created(uuid, text, bytea, bigint),
                                       {schema}.unqueue(uuid),
                                       {schema}.publish(text, jsonb, text),
                                       {schema}.publish_many(text[], jsonb) TO {name};
             CREATE POLICY gateway_reads ON {schema}.jobs FOR SELECT TO {name} USING (true);
             CREATE POLICY gateway_records ON {schema}.jobs FOR INSERT TO {name}
                 WITH CHECK (status IN ('created', 'queued') AND NOT cancel_requested);
             CREATE POLICY gateway_marks ON {schema}.jobs FOR UPDATE TO {name}
                 USING (true) WITH CHECK (true);
             CREATE POLICY gateway_withdraws ON {schema}.jobs FOR DELETE TO {name}
                 USING (status = 'queued' AND attempts = 0);\n"
        ));
    }
    if runner {
        let name = roles.runner;
        sql.push_str(&format!(
            "CREATE POLICY runner_all ON {schema}.jobs TO {name} USING (true) WITH CHECK (true);\n"
        ));
    }
    if gateway || runner {
        sql.push_str(&format!(
            "ALTER TABLE {schema}.jobs ENABLE ROW LEVEL SECURITY;\n"
        ));
    } else {
        sql.push_str(&format!(
            "ALTER TABLE {schema}.jobs DISABLE ROW LEVEL SECURITY;\n"
        ));
    }
    tx.batch_execute(&sql).await?;
    tx.commit().await?;
    Ok(applied)
}
