#!/usr/bin/env bash
# Make PostgreSQL and RabbitMQ available for Sluice on this machine.
#
# Idempotent: safe to run again (a second run is a quick check). Works on a
# fresh Debian bookworm machine as root without systemd: installs the packages
# if needed and runs a PRIVATE PostgreSQL cluster and a PRIVATE RabbitMQ node
# under $SLUICE_STATE_DIR, on private ports. If something already answers on
# those ports it is used as it is. It also installs nginx (never starts it):
# the tests run their own nginx from deploy/nginx/nginx.conf.template.
#
# Settings: see deploy/lib.sh (SLUICE_STATE_DIR, SLUICE_PG_PORT,
# SLUICE_AMQP_PORT, SLUICE_AMQP_DIST_PORT, SLUICE_PG_FAST).
#
# Prints (on stdout) shell lines that can be eval'ed:
#   export SLUICE_DATABASE__URL=...   export SLUICE_AMQP__URL=...
set -euo pipefail

LOG_PREFIX=provision
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages and runs services as the postgres user)"

PROVISION_START="$(now_s)"

# ------------------------------------------------------------------ helpers ---


# Every parent of DIR must be traversable by the postgres user.
ensure_traversable() {
    local dir="$1"
    while [[ "$dir" != / && -n "$dir" ]]; do
        if ! as_postgres test -x "$dir" 2>/dev/null; then
            log "making $dir traversable (o+x) for the postgres user"
            chmod o+x "$dir"
        fi
        dir="$(dirname "$dir")"
    done
}

# ---------------------------------------------------------------- locking ---

mkdir -p "$SLUICE_STATE_DIR"
chmod 0755 "$SLUICE_STATE_DIR"
exec 9>"$SLUICE_STATE_DIR/provision.lock"
if ! flock -w 600 9; then
    die "another provision.sh holds $SLUICE_STATE_DIR/provision.lock for more than 600s"
fi

# ------------------------------------------------------------- PostgreSQL ---

pg_ensure_installed() {
    if [[ ! -x "$SLUICE_PG_BIN/initdb" || ! -x "$SLUICE_PG_BIN/psql" ]]; then
        apt_install --no-install-recommends postgresql
    fi
    [[ -x "$SLUICE_PG_BIN/initdb" ]] || die "$SLUICE_PG_BIN/initdb still missing after installing postgresql"
    id postgres >/dev/null 2>&1 || die "the postgres OS user does not exist"
}

pg_init_cluster() {
    if [[ -f "$SLUICE_PG_DATA/PG_VERSION" ]]; then
        local v
        v="$(cat "$SLUICE_PG_DATA/PG_VERSION")"
        [[ "$v" == "$SLUICE_PG_VERSION" ]] \
            || die "$SLUICE_PG_DATA holds a PostgreSQL $v cluster, expected $SLUICE_PG_VERSION; remove $SLUICE_PG_DIR to start over"
        return 0
    fi
    # initdb into a temporary folder and rename it when complete, so that an
    # interrupted run never leaves a half-made cluster behind.
    local tmp="$SLUICE_PG_DIR/data.initdb"
    rm -rf "$tmp"
    [[ -e "$SLUICE_PG_DATA" ]] && { log "removing incomplete data dir $SLUICE_PG_DATA"; rm -rf "$SLUICE_PG_DATA"; }
    log "initdb: new private cluster in $SLUICE_PG_DATA"
    if ! as_postgres "$SLUICE_PG_BIN/initdb" -D "$tmp" -U postgres \
            --auth-local=peer --auth-host=scram-sha-256 \
            --encoding=UTF8 --no-locale --no-instructions >"$SLUICE_PG_DIR/initdb.log" 2>&1; then
        show_log_tail "$SLUICE_PG_DIR/initdb.log"
        die "initdb failed (see $SLUICE_PG_DIR/initdb.log)"
    fi
    echo "include = 'sluice.conf'   # settings written by deploy/provision.sh" >>"$tmp/postgresql.conf"
    mv "$tmp" "$SLUICE_PG_DATA"
}

# Create/refresh role and database. Needs superuser over the private socket.
pg_ensure_role_and_db() {
    pg_superuser_psql -f - <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${SLUICE_DB_USER}') THEN
        CREATE ROLE ${SLUICE_DB_USER};
    END IF;
END
\$\$;
SET client_min_messages = warning;
-- The owner: migrates, and is the operators' and the test suite's login
-- (CREATEDB for the tests' scratch databases). No process runs as it.
ALTER ROLE ${SLUICE_DB_USER} WITH LOGIN CREATEDB NOSUPERUSER PASSWORD '${SLUICE_DB_PASSWORD}';
GRANT pg_signal_backend, pg_read_all_stats TO ${SLUICE_DB_USER};
SELECT 'CREATE DATABASE ${SLUICE_DB_NAME} OWNER ${SLUICE_DB_USER}'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${SLUICE_DB_NAME}')
\gexec
ALTER DATABASE ${SLUICE_DB_NAME} OWNER TO ${SLUICE_DB_USER};
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${SLUICE_DB_TLS_USER}') THEN
        CREATE ROLE ${SLUICE_DB_TLS_USER};
    END IF;
END
\$\$;
ALTER ROLE ${SLUICE_DB_TLS_USER} WITH LOGIN NOCREATEDB NOSUPERUSER INHERIT PASSWORD '${SLUICE_DB_PASSWORD}';
GRANT ${SLUICE_DB_USER} TO ${SLUICE_DB_TLS_USER};
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${SLUICE_DB_CERT_USER}') THEN
        CREATE ROLE ${SLUICE_DB_CERT_USER};
    END IF;
END
\$\$;
ALTER ROLE ${SLUICE_DB_CERT_USER} WITH LOGIN NOCREATEDB NOSUPERUSER INHERIT PASSWORD NULL;
GRANT ${SLUICE_DB_USER} TO ${SLUICE_DB_CERT_USER};
-- The processes' roles: log in, nothing else; what they may touch is
-- granted by \`sluice-jobs migrate\` (store/src/grants.rs).
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${SLUICE_DB_GATEWAY_USER}') THEN
        CREATE ROLE ${SLUICE_DB_GATEWAY_USER};
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${SLUICE_DB_RUNNER_USER}') THEN
        CREATE ROLE ${SLUICE_DB_RUNNER_USER};
    END IF;
END
\$\$;
ALTER ROLE ${SLUICE_DB_GATEWAY_USER} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '${SLUICE_DB_PASSWORD}';
ALTER ROLE ${SLUICE_DB_RUNNER_USER} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '${SLUICE_DB_PASSWORD}';
SQL
}

# Can the application role log in over TCP with its password?
pg_app_login_works() {
    PGPASSWORD="$SLUICE_DB_PASSWORD" PGCONNECT_TIMEOUT=5 "$SLUICE_PG_BIN/psql" -X -q -w -tA \
        -h 127.0.0.1 -p "$SLUICE_PG_PORT" -U "$SLUICE_DB_USER" -d "$SLUICE_DB_NAME" \
        -c 'select 1' >/dev/null 2>&1
}

provision_postgres() {
    pg_ensure_installed

    tls_ensure_certs
    if [[ "$(pg_ready_status)" == 0 ]]; then
        if [[ -n "$(pg_postmaster_pid)" ]]; then
            log "PostgreSQL: private cluster already running on 127.0.0.1:${SLUICE_PG_PORT}"
            local changed=0
            pg_write_settings "$SLUICE_PG_DATA/sluice.conf" && changed=1
            pg_write_hba "$SLUICE_PG_DATA/pg_hba.conf" && changed=1
            if (( changed )); then
                log "PostgreSQL: settings changed (SLUICE_PG_FAST=$SLUICE_PG_FAST, TLS, pg_hba); reloading"
                pg_ctl_cmd reload >/dev/null
            fi
        else
            log "PostgreSQL: something else already answers on 127.0.0.1:${SLUICE_PG_PORT}; using it"
        fi
        if [[ -S "$SLUICE_PG_RUN/.s.PGSQL.${SLUICE_PG_PORT}" ]] && pg_ensure_role_and_db 2>/dev/null; then
            log "PostgreSQL: role '${SLUICE_DB_USER}' and database '${SLUICE_DB_NAME}' ensured"
        elif pg_app_login_works; then
            log "PostgreSQL: no superuser access; role '${SLUICE_DB_USER}' can log in, assuming it is set up"
        else
            log "PostgreSQL: WARNING: no superuser access and '${SLUICE_DB_USER}' cannot log in; assuming it is set up anyway"
        fi
        return 0
    fi

    # Our own private cluster.
    mkdir -p "$SLUICE_PG_DIR" "$SLUICE_PG_RUN"
    chown postgres:postgres "$SLUICE_PG_DIR" "$SLUICE_PG_RUN"
    chmod 0755 "$SLUICE_PG_DIR" "$SLUICE_PG_RUN"
    ensure_traversable "$SLUICE_PG_DIR"
    touch "$SLUICE_PG_LOG"
    chown postgres:postgres "$SLUICE_PG_LOG"

    pg_init_cluster
    pg_write_settings "$SLUICE_PG_DATA/sluice.conf" || true
    pg_write_hba "$SLUICE_PG_DATA/pg_hba.conf" || true
    pg_start
    pg_ensure_role_and_db
    log "PostgreSQL: role '${SLUICE_DB_USER}' and database '${SLUICE_DB_NAME}' ensured"
    pg_app_login_works || die "PostgreSQL: cannot log in as ${SLUICE_DB_USER} over TCP with its password"
}

# --------------------------------------------------------------- RabbitMQ ---

rabbit_ensure_installed() {
    if [[ ! -x "$SLUICE_RABBIT_BIN/rabbitmq-server" ]]; then
        apt_install --no-install-recommends rabbitmq-server
    fi
    [[ -x "$SLUICE_RABBIT_BIN/rabbitmq-server" ]] || die "$SLUICE_RABBIT_BIN/rabbitmq-server still missing after installing rabbitmq-server"
}

provision_rabbitmq() {
    rabbit_ensure_installed
    tls_ensure_certs

    if tcp_port_open "$SLUICE_AMQP_PORT"; then
        if [[ -n "$(rabbit_beam_pid)" ]]; then
            log "RabbitMQ: private node $SLUICE_RABBIT_NODE already running on 127.0.0.1:${SLUICE_AMQP_PORT}"
            RABBIT_CONF_CHANGED=0
            rabbit_prepare_dirs
            if (( RABBIT_CONF_CHANGED )); then
                # Listeners (the amqps one, say) are read at boot only.
                log "RabbitMQ: configuration changed; restarting the node"
                rabbit_stop
                rabbit_start
            fi
        else
            log "RabbitMQ: something else already accepts TCP on 127.0.0.1:${SLUICE_AMQP_PORT}; using it"
        fi
        if rabbit_ensure_user && rabbit_ensure_process_users; then
            log "RabbitMQ: users '${SLUICE_AMQP_USER}', '${SLUICE_AMQP_GATEWAY_USER}', '${SLUICE_AMQP_RUNNER_USER}' ensured"
        else
            log "RabbitMQ: cannot reach the node with rabbitmqctl; assuming user '${SLUICE_AMQP_USER}' is set up"
        fi
        return 0
    fi

    ensure_traversable "$SLUICE_STATE_DIR"
    rabbit_start
    rabbit_ensure_user || die "RabbitMQ: could not create user '${SLUICE_AMQP_USER}'"
    rabbit_ensure_process_users || die "RabbitMQ: could not create the gateway's and the runner's users"
    log "RabbitMQ: users '${SLUICE_AMQP_USER}', '${SLUICE_AMQP_GATEWAY_USER}', '${SLUICE_AMQP_RUNNER_USER}' ensured"
}

# ------------------------------------------------------------------ nginx ---

SLUICE_NGINX_BIN=/usr/sbin/nginx

# Install only. The end-to-end tests start nginx themselves with a private
# prefix and port; the system nginx service is never started here (and on
# these machines policy-rc.d stops apt from starting it).
nginx_ensure_installed() {
    if [[ -x "$SLUICE_NGINX_BIN" ]]; then
        log "nginx: $SLUICE_NGINX_BIN present"
        return 0
    fi
    apt_install --no-install-recommends nginx
    [[ -x "$SLUICE_NGINX_BIN" ]] || die "$SLUICE_NGINX_BIN still missing after installing nginx"
    log "nginx: installed (not started)"
}

# The development and test demo table (never created by the migrations).
pg_ensure_demo_items() {
    PGPASSWORD="$SLUICE_DB_PASSWORD" PGCONNECT_TIMEOUT=5 PGOPTIONS='-c client_min_messages=warning' \
        "$SLUICE_PG_BIN/psql" -X -q -w -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$SLUICE_PG_PORT" -U "$SLUICE_DB_USER" -d "$SLUICE_DB_NAME" \
        -f "$SLUICE_DEPLOY_DIR/demo-items.sql" \
        || die "PostgreSQL: could not create the demo table public.items"
    log "PostgreSQL: demo table public.items ensured (development and tests only)"
}

# -------------------------------------------------------------------- main ---

log "state dir $SLUICE_STATE_DIR; PostgreSQL port $SLUICE_PG_PORT; AMQP port $SLUICE_AMQP_PORT (dist $SLUICE_AMQP_DIST_PORT); SLUICE_PG_FAST=$SLUICE_PG_FAST"
provision_postgres
pg_ensure_demo_items
provision_rabbitmq
nginx_ensure_installed

# Holds database and broker passwords: readable by its owner only.
(umask 077 && cat >"$SLUICE_STATE_DIR/sluice.env") <<EOF
export SLUICE_DATABASE__URL='${SLUICE_PG_URL}'
export SLUICE_AMQP__URL='${SLUICE_AMQP_URL}'
EOF
chmod 0600 "$SLUICE_STATE_DIR/sluice.env"

log "done in $(elapsed_fmt "$PROVISION_START")s; the same lines are in $SLUICE_STATE_DIR/sluice.env"
echo "# PostgreSQL: ${SLUICE_PG_URL}"
echo "# RabbitMQ:   ${SLUICE_AMQP_URL}"
echo "export SLUICE_DATABASE__URL='${SLUICE_PG_URL}'"
echo "export SLUICE_AMQP__URL='${SLUICE_AMQP_URL}'"
