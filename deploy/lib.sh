# shellcheck shell=bash
# Variables defined here are used by the scripts that source this file.
# shellcheck disable=SC2034
# Shared settings and helpers for Sluice's deploy scripts.
#
# Sourced (never executed) by provision.sh, services.sh, start.sh and test.sh.
# Everything that describes the private PostgreSQL cluster and the private
# RabbitMQ node lives here, so that every script agrees on ports, paths and
# environment.
#
# Settings (environment, with defaults):
#   SLUICE_STATE_DIR       /var/tmp/sluice   data, logs, sockets of the private services
#   SLUICE_PG_PORT         25432             PostgreSQL TCP port (127.0.0.1)
#   SLUICE_AMQP_PORT       25682             RabbitMQ AMQP port (127.0.0.1)
#   SLUICE_AMQP_DIST_PORT  25683             RabbitMQ Erlang distribution port
#   SLUICE_PG_FAST         0                 1: fsync/full_page_writes off (commits stay synchronous)
#
# The ports sit below Linux's ephemeral range (32768-60999 by default): a
# port inside it can be taken as the source port of any outgoing connection
# while its service is down, and the restart then fails with the address in
# use. That happened to a cluster node in a test run.

if [[ -n "${SLUICE_LIB_LOADED:-}" ]]; then
    return 0
fi
SLUICE_LIB_LOADED=1

SLUICE_DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SLUICE_REPO_ROOT="$(cd "$SLUICE_DEPLOY_DIR/.." && pwd)"

: "${SLUICE_STATE_DIR:=/var/tmp/sluice}"
: "${SLUICE_PG_PORT:=25432}"
: "${SLUICE_AMQP_PORT:=25682}"
: "${SLUICE_AMQP_DIST_PORT:=25683}"
: "${SLUICE_PG_FAST:=0}"
# The private node's TLS (amqps) listener; empty for none (cluster nodes).
: "${SLUICE_AMQPS_PORT:=25671}"
export SLUICE_STATE_DIR SLUICE_PG_PORT SLUICE_AMQP_PORT SLUICE_AMQP_DIST_PORT SLUICE_PG_FAST SLUICE_AMQPS_PORT

# A throwaway certificate authority and the server certificate it signed
# for 127.0.0.1/localhost, made by provision.sh, so that PostgreSQL and
# RabbitMQ also serve TLS and the tests can check Sluice's TLS clients.
# Never a production CA: its key lies next to it.
SLUICE_TLS_DIR="$SLUICE_STATE_DIR/tls"
SLUICE_TLS_CA="$SLUICE_TLS_DIR/ca.pem"
# A role that may only log in over TLS (pg_hba `hostnossl ... reject`), so
# the tests can see a plain connection refused; it acts as the application
# role (a member of it).
SLUICE_DB_TLS_USER=sluice_tls
# A role that logs in with a client certificate only (pg_hba `cert`), also
# a member of the application role, and the certificate and key the
# throwaway CA signed for it.
SLUICE_DB_CERT_USER=sluice_cert
SLUICE_PG_CLIENT_CERT="$SLUICE_TLS_DIR/pg-client.pem"
SLUICE_PG_CLIENT_KEY="$SLUICE_TLS_DIR/pg-client-key.pem"

# Credentials used by the application and the tests.
SLUICE_DB_USER=sluice
SLUICE_DB_PASSWORD=sluice
SLUICE_DB_NAME=sluice
SLUICE_AMQP_USER=sluice
SLUICE_AMQP_PASSWORD=sluice

SLUICE_PG_URL="postgres://${SLUICE_DB_USER}:${SLUICE_DB_PASSWORD}@127.0.0.1:${SLUICE_PG_PORT}/${SLUICE_DB_NAME}"
SLUICE_AMQP_URL="amqp://${SLUICE_AMQP_USER}:${SLUICE_AMQP_PASSWORD}@127.0.0.1:${SLUICE_AMQP_PORT}/%2f"
# Each process its own broker user, with only what it needs (see
# rabbit_ensure_process_users); SLUICE_AMQP_USER is the operators'.
SLUICE_AMQP_GATEWAY_USER=sluice_gateway
SLUICE_AMQP_RUNNER_USER=sluice_runner
SLUICE_GATEWAY_AMQP_URL="amqp://${SLUICE_AMQP_GATEWAY_USER}:${SLUICE_AMQP_PASSWORD}@127.0.0.1:${SLUICE_AMQP_PORT}/%2f"
SLUICE_RUNNER_AMQP_URL="amqp://${SLUICE_AMQP_RUNNER_USER}:${SLUICE_AMQP_PASSWORD}@127.0.0.1:${SLUICE_AMQP_PORT}/%2f"
# And its own database role (the defaults of database.gateway_role and
# database.runner_role, granted by `sluice-jobs migrate`); SLUICE_DB_USER
# owns the database and the schema, and migrates it.
SLUICE_DB_GATEWAY_USER=sluice_gateway
SLUICE_DB_RUNNER_USER=sluice_runner
SLUICE_GATEWAY_PG_URL="postgres://${SLUICE_DB_GATEWAY_USER}:${SLUICE_DB_PASSWORD}@127.0.0.1:${SLUICE_PG_PORT}/${SLUICE_DB_NAME}"
SLUICE_RUNNER_PG_URL="postgres://${SLUICE_DB_RUNNER_USER}:${SLUICE_DB_PASSWORD}@127.0.0.1:${SLUICE_PG_PORT}/${SLUICE_DB_NAME}"

# ---------------------------------------------------------------- logging ---

: "${LOG_PREFIX:=sluice}"

log() {
    printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2
}

die() {
    printf '[%s] ERROR: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}

# Print the last lines of a log file to stderr (used when a start fails).
show_log_tail() {
    local file="$1" lines="${2:-30}"
    if [[ -r "$file" ]]; then
        log "last $lines lines of $file:"
        tail -n "$lines" "$file" | sed -u "s/^/[$LOG_PREFIX]   | /" >&2 || true
    fi
}

# Seconds since the epoch with sub-second precision; for bounded waits.
now_s() {
    date +%s.%N
}

# elapsed_since START -> integer seconds elapsed (for bounded waits)
elapsed_since() {
    local start="$1"
    awk -v s="$start" -v n="$(now_s)" 'BEGIN { printf "%d", n - s }'
}

# elapsed_fmt START -> seconds elapsed with one decimal (for log lines)
elapsed_fmt() {
    local start="$1"
    awk -v s="$start" -v n="$(now_s)" 'BEGIN { printf "%.1f", n - s }'
}

# True if 127.0.0.1:PORT accepts a TCP connection within 2 seconds.
tcp_port_open() {
    local port="$1"
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
}

# True if PID is a live process (not a zombie).
pid_alive() {
    local pid="$1" state
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    state="$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# wait_pid_gone PID TIMEOUT_SECONDS WHAT
wait_pid_gone() {
    local pid="$1" limit="$2" what="$3" start
    start="$(now_s)"
    while [[ -d "/proc/$pid" ]]; do
        if pid_alive "$pid"; then :; else
            # A zombie: its parent has not reaped it yet. It holds no locks
            # or sockets any more; for our purposes it is gone.
            return 0
        fi
        if (( $(elapsed_since "$start") >= limit )); then
            die "$what (pid $pid) still exists after ${limit}s"
        fi
        sleep 0.05
    done
}

# Run a command that leaves a daemon behind with every file descriptor above 2
# closed, so the daemon does not keep the caller's files open (for example
# provision.sh's lock file, or a test harness' pipes).
run_without_extra_fds() {
    (
        local fd
        for fd in /proc/"$BASHPID"/fd/*; do
            fd="${fd##*/}"
            if [[ "$fd" =~ ^[0-9]+$ ]] && (( fd > 2 )); then
                eval "exec ${fd}>&-"
            fi
        done
        "$@"
    )
}

# The command line of PID with NULs turned into spaces ("" if gone).
pid_cmdline() {
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true
}

# ------------------------------------------------------------- PostgreSQL ---

SLUICE_PG_VERSION=15
SLUICE_PG_BIN="/usr/lib/postgresql/${SLUICE_PG_VERSION}/bin"
SLUICE_PG_DIR="$SLUICE_STATE_DIR/pg"
SLUICE_PG_DATA="$SLUICE_PG_DIR/data"
SLUICE_PG_RUN="$SLUICE_PG_DIR/run"
SLUICE_PG_LOG="$SLUICE_PG_DIR/postgres.log"
# Distinctive process titles ("postgres: sluice-25432: checkpointer"), so the
# cluster's processes can be found even after the postmaster is gone.
SLUICE_PG_CLUSTER_NAME="sluice-${SLUICE_PG_PORT}"
SLUICE_PG_START_TIMEOUT=60

# Run a command as the postgres OS user. setpriv (unlike runuser/su) keeps the
# open-files limit; --reset-env gives it postgres' HOME and a clean env.
as_postgres() {
    (cd / && setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- "$@")
}

pg_ctl_cmd() {
    as_postgres "$SLUICE_PG_BIN/pg_ctl" -D "$SLUICE_PG_DATA" "$@"
}

# Superuser psql over the private unix socket (peer authentication).
pg_superuser_psql() {
    as_postgres "$SLUICE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$SLUICE_PG_RUN" -p "$SLUICE_PG_PORT" -U postgres -d postgres "$@"
}

# Exit status of pg_isready against 127.0.0.1:port:
# 0 accepting, 1 rejecting (starting up / shutting down), 2 no response, 3 no attempt.
pg_ready_status() {
    local rc=0
    "$SLUICE_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$SLUICE_PG_PORT" -t 3 || rc=$?
    echo "$rc"
}

# PID of the private postmaster if it is running, else nothing.
pg_postmaster_pid() {
    local pid
    [[ -f "$SLUICE_PG_DATA/postmaster.pid" ]] || return 0
    pid="$(head -n 1 "$SLUICE_PG_DATA/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if pid_alive "$pid" && [[ "$(pid_cmdline "$pid")" == *postgres* ]]; then
        echo "$pid"
    fi
}

# All live processes of the private cluster (postmaster and children), found
# by the cluster_name in their process titles.
pg_cluster_pids() {
    local dir pid cmd
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        cmd="$(pid_cmdline "$pid")"
        case "$cmd" in
            "postgres: ${SLUICE_PG_CLUSTER_NAME}: "*) pid_alive "$pid" && echo "$pid" ;;
            *"/postgres -D $SLUICE_PG_DATA"*) pid_alive "$pid" && echo "$pid" ;;
        esac
    done
    return 0
}

# Moves TMP over FILE (owned by postgres, mode 0600) unless FILE already
# holds the same; returns 1 when it did, so callers reload only on change.
pg_install_if_changed() {
    local tmp="$1" file="$2"
    if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    install -o postgres -g postgres -m 0600 "$tmp" "$file"
    rm -f "$tmp"
    return 0
}

# Write the cluster's settings file. Returns 0 if it changed.
pg_write_settings() {
    local file="$1" tmp
    tmp="$(mktemp)"
    {
        echo "# Generated by deploy/provision.sh; rewritten on every run. Do not edit."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = ${SLUICE_PG_PORT}"
        echo "unix_socket_directories = '${SLUICE_PG_RUN}'"
        echo "cluster_name = '${SLUICE_PG_CLUSTER_NAME}'"
        echo "max_connections = 300"
        echo "shared_buffers = 256MB"
        echo "password_encryption = 'scram-sha-256'"
        echo "log_line_prefix = '%m [%p] %q%u@%d '"
        if [[ -f "$SLUICE_TLS_DIR/pg-server-key.pem" ]]; then
            echo "ssl = on"
            echo "ssl_cert_file = '$SLUICE_TLS_DIR/pg-server.pem'"
            echo "ssl_key_file = '$SLUICE_TLS_DIR/pg-server-key.pem'"
            echo "ssl_min_protocol_version = 'TLSv1.2'"
            # Client certificates are checked against the throwaway CA.
            echo "ssl_ca_file = '$SLUICE_TLS_DIR/ca.pem'"
        fi
        if [[ "$SLUICE_PG_FAST" == 1 ]]; then
            echo "# SLUICE_PG_FAST=1, for tests only: no fsync, so an OS crash"
            echo "# may lose data; a PostgreSQL crash (kill, immediate restart)"
            echo "# loses no committed transaction, which the fault tests rely on."
            echo "fsync = off"
            echo "synchronous_commit = on"
            echo "full_page_writes = off"
        else
            echo "fsync = on"
            echo "synchronous_commit = on"
            echo "full_page_writes = on"
        fi
    } >"$tmp"
    pg_install_if_changed "$tmp" "$file"
}

# Writes the cluster's pg_hba.conf: peer over the private socket, passwords
# over TCP, $SLUICE_DB_TLS_USER over TLS only, and $SLUICE_DB_CERT_USER
# only with a client certificate the throwaway CA signed for its name.
# Returns 1 if the file was already so.
pg_write_hba() {
    local file="$1" tmp
    tmp="$(mktemp)"
    cat >"$tmp" <<EOF
# Generated by deploy/provision.sh; rewritten on every run. Do not edit.
local     all  all                        peer
hostnossl all  ${SLUICE_DB_TLS_USER} 127.0.0.1/32 reject
hostnossl all  ${SLUICE_DB_TLS_USER} ::1/128      reject
hostssl   all  ${SLUICE_DB_CERT_USER} 127.0.0.1/32 cert
host      all  ${SLUICE_DB_CERT_USER} all          reject
host      all  all  127.0.0.1/32          scram-sha-256
host      all  all  ::1/128               scram-sha-256
EOF
    pg_install_if_changed "$tmp" "$file"
}

# Remove lock files left by a server that was killed and whose PID is gone
# (or now belongs to something that is not a postgres of ours).
pg_clear_stale_locks() {
    local lock pid
    for lock in "$SLUICE_PG_DATA/postmaster.pid" "$SLUICE_PG_RUN/.s.PGSQL.${SLUICE_PG_PORT}.lock"; do
        [[ -f "$lock" ]] || continue
        pid="$(head -n 1 "$lock" 2>/dev/null || true)"
        pid="${pid#-}"
        if [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" && [[ "$(pid_cmdline "$pid")" == *postgres* ]]; then
            continue
        fi
        log "removing stale lock file $lock (pid ${pid:-?} is gone)"
        rm -f "$lock"
    done
}

# Start the private cluster (must already be initialised) and wait until it
# accepts connections.
pg_start() {
    local pids pid start
    if [[ -n "$(pg_postmaster_pid)" ]]; then
        log "PostgreSQL postmaster already running (pid $(pg_postmaster_pid)); waiting for it to accept connections"
        pg_wait_ready
        return 0
    fi
    # Leftovers of a crashed server (children of a killed postmaster) must be
    # gone before a new postmaster can take the shared memory and lock files.
    start="$(now_s)"
    while pids="$(pg_cluster_pids)"; [[ -n "$pids" ]]; do
        if (( $(elapsed_since "$start") >= 30 )); then
            die "old PostgreSQL processes still alive after 30s: $(echo "$pids" | tr '\n' ' ')"
        fi
        sleep 0.1
    done
    pg_clear_stale_locks
    log "starting PostgreSQL on 127.0.0.1:${SLUICE_PG_PORT} (data $SLUICE_PG_DATA, log $SLUICE_PG_LOG)"
    if ! run_without_extra_fds pg_ctl_cmd -l "$SLUICE_PG_LOG" -w -t "$SLUICE_PG_START_TIMEOUT" start >/dev/null; then
        show_log_tail "$SLUICE_PG_LOG"
        die "PostgreSQL did not start within ${SLUICE_PG_START_TIMEOUT}s (see $SLUICE_PG_LOG)"
    fi
    pg_wait_ready
    pid="$(pg_postmaster_pid)"
    log "PostgreSQL is up (postmaster pid ${pid:-?})"
}

# Wait (bounded) until pg_isready answers "accepting connections".
pg_wait_ready() {
    local start rc
    start="$(now_s)"
    while :; do
        rc="$(pg_ready_status)"
        [[ "$rc" == 0 ]] && return 0
        if (( $(elapsed_since "$start") >= SLUICE_PG_START_TIMEOUT )); then
            show_log_tail "$SLUICE_PG_LOG"
            die "PostgreSQL on 127.0.0.1:${SLUICE_PG_PORT} not accepting connections after ${SLUICE_PG_START_TIMEOUT}s (pg_isready status $rc)"
        fi
        sleep 0.1
    done
}

# Stop the private cluster. MODE: smart|fast|immediate.
pg_stop() {
    local mode="${1:-fast}" pid
    pid="$(pg_postmaster_pid)"
    if [[ -z "$pid" ]]; then
        log "PostgreSQL is not running"
        return 0
    fi
    log "stopping PostgreSQL (pid $pid, mode $mode)"
    if ! pg_ctl_cmd -m "$mode" -w -t 60 stop >/dev/null; then
        show_log_tail "$SLUICE_PG_LOG"
        die "PostgreSQL did not stop within 60s"
    fi
    wait_pid_gone "$pid" 30 "PostgreSQL postmaster"
}

# kill -9 the postmaster and all its processes; wait until they are gone.
pg_kill() {
    local pid pids p
    pid="$(pg_postmaster_pid)"
    pids="$(pg_cluster_pids)"
    if [[ -z "$pid" && -z "$pids" ]]; then
        log "PostgreSQL is not running"
        return 0
    fi
    log "kill -9 PostgreSQL (postmaster ${pid:-none}, $(echo "$pids" | grep -c . || true) processes)"
    if [[ -n "$pid" ]]; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    for p in $pids; do
        kill -9 "$p" 2>/dev/null || true
    done
    if [[ -n "$pid" ]]; then
        wait_pid_gone "$pid" 30 "PostgreSQL postmaster"
    fi
    for p in $pids; do
        wait_pid_gone "$p" 30 "PostgreSQL process"
    done
    log "PostgreSQL killed"
}

# --------------------------------------------------------------- RabbitMQ ---

SLUICE_RABBIT_BIN=/usr/lib/rabbitmq/bin
SLUICE_RABBIT_NODE="sluice@localhost"
SLUICE_RABBIT_DIR="$SLUICE_STATE_DIR/rabbitmq"
SLUICE_RABBIT_HOME="$SLUICE_RABBIT_DIR/home"
SLUICE_RABBIT_CONF="$SLUICE_RABBIT_DIR/rabbitmq.conf"
SLUICE_RABBIT_PLUGINS_FILE="$SLUICE_RABBIT_DIR/enabled_plugins"
SLUICE_RABBIT_PID_FILE="$SLUICE_RABBIT_DIR/node.pid"
SLUICE_RABBIT_LOG_DIR="$SLUICE_RABBIT_DIR/log"
SLUICE_RABBIT_START_TIMEOUT=60

# The complete environment of the private node, as NAME=VALUE words for env(1).
# HOME matters: the Erlang cookie lives in $HOME/.erlang.cookie, and the CLI
# tools must see the same one as the node. It is never set in the calling
# shell (cargo would then look for ~/.cargo there).
sluice_rabbit_env() {
    SLUICE_RABBIT_ENV=(
        "HOME=$SLUICE_RABBIT_HOME"
        "RABBITMQ_NODENAME=$SLUICE_RABBIT_NODE"
        "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
        "RABBITMQ_NODE_PORT=$SLUICE_AMQP_PORT"
        "RABBITMQ_DIST_PORT=$SLUICE_AMQP_DIST_PORT"
        "RABBITMQ_MNESIA_BASE=$SLUICE_RABBIT_DIR/mnesia"
        "RABBITMQ_LOG_BASE=$SLUICE_RABBIT_LOG_DIR"
        "RABBITMQ_CONFIG_FILE=$SLUICE_RABBIT_CONF"
        "RABBITMQ_ADVANCED_CONFIG_FILE=$SLUICE_RABBIT_DIR/advanced.config"
        "RABBITMQ_CONF_ENV_FILE=$SLUICE_RABBIT_DIR/rabbitmq-env.conf"
        "RABBITMQ_ENABLED_PLUGINS_FILE=$SLUICE_RABBIT_PLUGINS_FILE"
        "RABBITMQ_PID_FILE=$SLUICE_RABBIT_PID_FILE"
    )
}

# Run a command with the private node's environment.
with_rabbit_env() {
    sluice_rabbit_env
    env "${SLUICE_RABBIT_ENV[@]}" "$@"
}

# rabbitmqctl against the private node (bounded: a CLI call can hang if the
# node is half up).
rabbitmqctl_private() {
    with_rabbit_env timeout 60 "$SLUICE_RABBIT_BIN/rabbitmqctl" -n "$SLUICE_RABBIT_NODE" "$@"
}

# PID of the private node's beam.smp, or nothing.
rabbit_beam_pid() {
    local pid dir cmd
    if [[ -f "$SLUICE_RABBIT_PID_FILE" ]]; then
        pid="$(tr -dc '0-9' <"$SLUICE_RABBIT_PID_FILE" 2>/dev/null || true)"
        if [[ -n "$pid" ]] && pid_alive "$pid"; then
            cmd="$(pid_cmdline "$pid")"
            if [[ "$cmd" == *beam* && "$cmd" == *" -home $SLUICE_RABBIT_HOME "* ]]; then
                echo "$pid"
                return 0
            fi
        fi
    fi
    # No (valid) pid file: look for a beam.smp with our private HOME (the node
    # name is not on its command line; "-home DIR" is).
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        cmd="$(pid_cmdline "$pid")"
        if [[ "$cmd" == *beam.smp* && "$cmd" == *" -home $SLUICE_RABBIT_HOME "* ]] && pid_alive "$pid"; then
            echo "$pid"
            return 0
        fi
    done
    return 0
}

# Create the node's directories, config, plugin list and Erlang cookie.
rabbit_prepare_dirs() {
    mkdir -p "$SLUICE_RABBIT_DIR/mnesia" "$SLUICE_RABBIT_LOG_DIR" "$SLUICE_RABBIT_HOME"
    chmod 0700 "$SLUICE_RABBIT_HOME"
    local tmp
    tmp="$(mktemp)"
    cat >"$tmp" <<EOF
# Generated by deploy/provision.sh; rewritten on every run. Do not edit.
# Listener address/port come from RABBITMQ_NODE_IP_ADDRESS/RABBITMQ_NODE_PORT.
loopback_users = none
# A larger accept backlog than the default 128 (load tests open many
# connections at once); the other options repeat RabbitMQ's defaults because
# setting any tcp_listen_options key replaces the whole default list.
tcp_listen_options.backlog = 4096
tcp_listen_options.nodelay = true
tcp_listen_options.linger.on = true
tcp_listen_options.linger.timeout = 0
tcp_listen_options.exit_on_close = false
log.file.level = info
log.console = false
EOF
    if [[ -n "$SLUICE_AMQPS_PORT" && -f "$SLUICE_TLS_DIR/server-key.pem" ]]; then
        cat >>"$tmp" <<EOF
# amqps on its own port, with the throwaway CA of provision.sh; clients
# need no certificate of their own, but one they send is verified.
listeners.ssl.default = 127.0.0.1:${SLUICE_AMQPS_PORT}
ssl_options.cacertfile = ${SLUICE_TLS_DIR}/ca.pem
ssl_options.certfile = ${SLUICE_TLS_DIR}/server.pem
ssl_options.keyfile = ${SLUICE_TLS_DIR}/server-key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
EOF
    fi
    if ! cmp -s "$tmp" "$SLUICE_RABBIT_CONF" 2>/dev/null; then
        mv "$tmp" "$SLUICE_RABBIT_CONF"
        chmod 0644 "$SLUICE_RABBIT_CONF"
        RABBIT_CONF_CHANGED=1
    else
        rm -f "$tmp"
    fi
    [[ -f "$SLUICE_RABBIT_PLUGINS_FILE" ]] || echo '[].' >"$SLUICE_RABBIT_PLUGINS_FILE"
    [[ -f "$SLUICE_RABBIT_DIR/rabbitmq-env.conf" ]] || : >"$SLUICE_RABBIT_DIR/rabbitmq-env.conf"
    if [[ ! -s "$SLUICE_RABBIT_HOME/.erlang.cookie" ]]; then
        # Create it before anything runs, so the node and the CLI never race
        # to create two different cookies.
        local cookie
        cookie="$(head -c 32 /dev/urandom | sha256sum | cut -c 1-32 | tr 'a-f' 'A-F')"
        (umask 077 && printf '%s' "$cookie" >"$SLUICE_RABBIT_HOME/.erlang.cookie")
        chmod 0400 "$SLUICE_RABBIT_HOME/.erlang.cookie"
    fi
}

# Start the private node (if its beam is not already running) and wait until
# it has fully booted and the AMQP port accepts connections.
rabbit_start() {
    local pid
    rabbit_prepare_dirs
    pid="$(rabbit_beam_pid)"
    if [[ -n "$pid" ]]; then
        log "RabbitMQ node $SLUICE_RABBIT_NODE already running (beam pid $pid); waiting for startup"
    else
        if tcp_port_open "$SLUICE_AMQP_PORT"; then
            die "port 127.0.0.1:${SLUICE_AMQP_PORT} is taken by something that is not the private RabbitMQ node"
        fi
        log "starting RabbitMQ node $SLUICE_RABBIT_NODE on 127.0.0.1:${SLUICE_AMQP_PORT} (dist port ${SLUICE_AMQP_DIST_PORT}, state $SLUICE_RABBIT_DIR)"
        rm -f "$SLUICE_RABBIT_PID_FILE"
        if ! run_without_extra_fds with_rabbit_env "$SLUICE_RABBIT_BIN/rabbitmq-server" -detached \
                >>"$SLUICE_RABBIT_LOG_DIR/startup.log" 2>&1; then
            show_log_tail "$SLUICE_RABBIT_LOG_DIR/startup.log"
            die "rabbitmq-server -detached failed (see $SLUICE_RABBIT_LOG_DIR)"
        fi
    fi
    rabbit_wait_ready
    log "RabbitMQ is up (beam pid $(rabbit_beam_pid))"
}

# Poll `rabbitmqctl await_startup` (it fails at once until the node has
# registered with epmd), then wait for the AMQP port.
rabbit_wait_ready() {
    local start out=""
    start="$(now_s)"
    while :; do
        if out="$(rabbitmqctl_private await_startup --timeout 10 2>&1)" \
                && tcp_port_open "$SLUICE_AMQP_PORT"; then
            return 0
        fi
        if (( $(elapsed_since "$start") >= SLUICE_RABBIT_START_TIMEOUT )); then
            log "last rabbitmqctl await_startup output: $out"
            show_log_tail "$SLUICE_RABBIT_LOG_DIR/${SLUICE_RABBIT_NODE}.log"
            show_log_tail "$SLUICE_RABBIT_LOG_DIR/startup.log" 10
            die "RabbitMQ node $SLUICE_RABBIT_NODE not ready after ${SLUICE_RABBIT_START_TIMEOUT}s (logs in $SLUICE_RABBIT_LOG_DIR)"
        fi
        sleep 0.5
    done
}

# Stop the node cleanly (rabbitmqctl shutdown waits for the OS process).
rabbit_stop() {
    local pid
    pid="$(rabbit_beam_pid)"
    if [[ -z "$pid" ]]; then
        log "RabbitMQ is not running"
        return 0
    fi
    log "stopping RabbitMQ node $SLUICE_RABBIT_NODE (beam pid $pid)"
    if ! rabbitmqctl_private shutdown >/dev/null 2>&1; then
        log "rabbitmqctl shutdown failed; sending SIGTERM to $pid"
        kill -TERM "$pid" 2>/dev/null || true
    fi
    wait_pid_gone "$pid" 60 "RabbitMQ beam.smp"
    log "RabbitMQ stopped"
}

# kill -9 the node's beam.smp and wait until it is gone.
rabbit_kill() {
    local pid
    pid="$(rabbit_beam_pid)"
    if [[ -z "$pid" ]]; then
        log "RabbitMQ is not running"
        return 0
    fi
    log "kill -9 RabbitMQ beam.smp (pid $pid)"
    kill -9 "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" 30 "RabbitMQ beam.smp"
    log "RabbitMQ killed"
}

# Ensure user sluice/sluice, administrator, full permissions on vhost /.
# Returns 1 if the node cannot be reached with the private env.
rabbit_ensure_user() {
    local users
    users="$(rabbitmqctl_private -q list_users 2>/dev/null)" || return 1
    if awk -v u="$SLUICE_AMQP_USER" '$1 == u && /administrator/ { found = 1 } END { exit !found }' <<<"$users"; then
        return 0
    fi
    if ! awk -v u="$SLUICE_AMQP_USER" '$1 == u { found = 1 } END { exit !found }' <<<"$users"; then
        log "RabbitMQ: creating user '${SLUICE_AMQP_USER}'"
        rabbitmqctl_private -q add_user "$SLUICE_AMQP_USER" "$SLUICE_AMQP_PASSWORD" >/dev/null
    fi
    rabbitmqctl_private -q set_permissions -p / "$SLUICE_AMQP_USER" '.*' '.*' '.*' >/dev/null
    rabbitmqctl_private -q set_user_tags "$SLUICE_AMQP_USER" administrator >/dev/null
}

# Makes the throwaway CA and a server certificate for 127.0.0.1/localhost
# in $SLUICE_TLS_DIR when they are missing (P-256, ten years: they only
# ever serve loopback), and PostgreSQL's copy of the pair, which it wants
# owned by its own user.
tls_ensure_certs() {
    local dir="$SLUICE_TLS_DIR"
    if [[ ! -f "$dir/server-key.pem" || ! -f "$dir/ca.pem" ]]; then
        command -v openssl >/dev/null 2>&1 || apt_install --no-install-recommends openssl
        log "TLS: making a throwaway CA and a server certificate in $dir"
        mkdir -p "$dir"
        chmod 0755 "$dir"
        local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$dir/server.ext"
        openssl req -x509 -days 3650 -subj "/CN=Sluice local test CA" "${ec[@]}" \
            -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null \
            && openssl req -new -subj "/CN=127.0.0.1" "${ec[@]}" \
                -keyout "$dir/server-key.pem" -out "$dir/server.csr" 2>/dev/null \
            && openssl x509 -req -days 3650 -set_serial 1 -in "$dir/server.csr" \
                -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -extfile "$dir/server.ext" \
                -out "$dir/server.pem" 2>/dev/null \
            || die "TLS: openssl could not make the certificates"
        chmod 0644 "$dir/ca.pem" "$dir/server.pem"
        chmod 0600 "$dir/ca-key.pem" "$dir/server-key.pem"
        rm -f "$dir/pg-server.pem" "$dir/pg-server-key.pem"
    fi
    if [[ ! -f "$dir/pg-server-key.pem" ]]; then
        install -o postgres -g postgres -m 0644 "$dir/server.pem" "$dir/pg-server.pem"
        install -o postgres -g postgres -m 0600 "$dir/server-key.pem" "$dir/pg-server-key.pem"
    fi
    if [[ ! -f "$SLUICE_PG_CLIENT_KEY" ]]; then
        log "TLS: making a client certificate for PostgreSQL role ${SLUICE_DB_CERT_USER}"
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=clientAuth" >"$dir/client.ext"
        openssl req -new -subj "/CN=${SLUICE_DB_CERT_USER}" \
                -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$dir/pg-client-key.tmp" -out "$dir/client.csr" 2>/dev/null \
            && openssl x509 -req -days 3650 -set_serial 2 -in "$dir/client.csr" \
                -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -extfile "$dir/client.ext" \
                -out "$SLUICE_PG_CLIENT_CERT" 2>/dev/null \
            || die "TLS: openssl could not make the client certificate"
        chmod 0644 "$SLUICE_PG_CLIENT_CERT"
        chmod 0600 "$dir/pg-client-key.tmp"
        mv "$dir/pg-client-key.tmp" "$SLUICE_PG_CLIENT_KEY"
    fi
}

# The gateway's and the runner's broker users, neither an administrator,
# each with permissions on Sluice's names only (`<prefix>.*`, any prefix
# without a dot; set narrower ones for a shared vhost):
# - the gateway declares the jobs and events topology and its own event
#   queue, publishes jobs (through the default exchange) and control
#   messages, and reads its own queue (declaring the jobs queue, with its
#   dead-letter exchange, also takes read on it and write on `<prefix>.dlx`,
#   which RabbitMQ checks); it may NOT publish to
#   `<prefix>.events`, so its credentials cannot send frames to any user;
# - the runner may use every `<prefix>.*` name: it publishes events, jobs
#   to retry and dead letters, and reads the jobs queue.
rabbit_ensure_process_users() {
    local users user
    users="$(rabbitmqctl_private -q list_users 2>/dev/null)" || return 1
    for user in "$SLUICE_AMQP_GATEWAY_USER" "$SLUICE_AMQP_RUNNER_USER"; do
        if ! awk -v u="$user" '$1 == u { found = 1 } END { exit !found }' <<<"$users"; then
            log "RabbitMQ: creating user '$user'"
            rabbitmqctl_private -q add_user "$user" "$SLUICE_AMQP_PASSWORD" >/dev/null
        fi
        rabbitmqctl_private -q set_user_tags "$user" >/dev/null
    done
    rabbitmqctl_private -q set_permissions -p / "$SLUICE_AMQP_GATEWAY_USER" \
        '^[^.]+\.(jobs|jobs\.dead|jobs\.dead\.settle|dlx|events|control|events\..+)$' \
        '^(amq\.default|[^.]+\.control|[^.]+\.events\..+|[^.]+\.jobs\.dead|[^.]+\.jobs\.dead\.settle|[^.]+\.dlx)$' \
        '^([^.]+\.events|[^.]+\.events\..+|[^.]+\.dlx|[^.]+\.jobs)$' >/dev/null
    rabbitmqctl_private -q set_permissions -p / "$SLUICE_AMQP_RUNNER_USER" \
        '^[^.]+\..+$' '^(amq\.default|[^.]+\..+)$' '^[^.]+\..+$' >/dev/null
}

# Installs Debian packages; on a fresh machine whose package lists are stale
# or empty, runs `apt-get update` once and tries again.
APT_UPDATED=0
apt_install() {
    local opts=(-o DPkg::Lock::Timeout=600 -y -q)
    log "apt-get install $*"
    if DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install "$@" >&2; then
        return 0
    fi
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "install failed; running apt-get update and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q update >&2
        APT_UPDATED=1
        DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install "$@" >&2 && return 0
    fi
    die "apt-get install $* failed"
}
