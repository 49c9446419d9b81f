#!/usr/bin/env bash
# Control the private PostgreSQL cluster and RabbitMQ node made by
# deploy/provision.sh (same settings: SLUICE_STATE_DIR, SLUICE_PG_PORT, ...).
# Tests use it to restart or kill the services for real.
#
# Usage: deploy/services.sh COMMAND [ARGS]
#   status                      show whether each service runs (exit 0 always)
#   stop                        stop both services cleanly
#   start-pg                    start PostgreSQL, wait until it accepts connections
#   stop-pg [smart|fast|immediate]   stop PostgreSQL (default fast)
#   restart-pg [fast|immediate] restart PostgreSQL (default fast), wait until ready
#   kill-pg                     kill -9 postmaster and all its processes, wait until gone
#   start-rabbit                start the RabbitMQ node, wait until fully booted
#   stop-rabbit                 stop the RabbitMQ node cleanly
#   restart-rabbit              stop-rabbit + start-rabbit
#   kill-rabbit                 kill -9 the node's beam.smp, wait until gone
#   rabbitmqctl ARGS...         run rabbitmqctl against the private node
#   psql ARGS...                run psql as the postgres superuser over the private socket
set -euo pipefail

LOG_PREFIX=services
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

require_pg_cluster() {
    [[ -f "$SLUICE_PG_DATA/PG_VERSION" ]] \
        || die "no private PostgreSQL cluster in $SLUICE_PG_DATA; run deploy/provision.sh first"
}

require_rabbit_installed() {
    [[ -x "$SLUICE_RABBIT_BIN/rabbitmq-server" ]] \
        || die "RabbitMQ is not installed; run deploy/provision.sh first"
}

pg_mode_arg() {
    local mode="${1:-fast}"
    case "$mode" in
        smart|fast|immediate) echo "$mode" ;;
        *) die "unknown PostgreSQL shutdown mode '$mode' (smart|fast|immediate)" ;;
    esac
}

cmd_status() {
    local pid rc
    pid="$(pg_postmaster_pid)"
    rc="$(pg_ready_status 2>/dev/null || echo 3)"
    if [[ -n "$pid" ]]; then
        echo "postgresql: running (postmaster pid $pid, 127.0.0.1:${SLUICE_PG_PORT}, pg_isready status $rc)"
    elif [[ "$rc" == 0 ]]; then
        echo "postgresql: not the private cluster, but something answers on 127.0.0.1:${SLUICE_PG_PORT}"
    else
        echo "postgresql: stopped"
    fi
    pid="$(rabbit_beam_pid)"
    if [[ -n "$pid" ]]; then
        if tcp_port_open "$SLUICE_AMQP_PORT"; then
            echo "rabbitmq:   running (beam pid $pid, node $SLUICE_RABBIT_NODE, 127.0.0.1:${SLUICE_AMQP_PORT})"
        else
            echo "rabbitmq:   starting or stopping (beam pid $pid, AMQP port ${SLUICE_AMQP_PORT} closed)"
        fi
    elif tcp_port_open "$SLUICE_AMQP_PORT"; then
        echo "rabbitmq:   not the private node, but something accepts TCP on 127.0.0.1:${SLUICE_AMQP_PORT}"
    else
        echo "rabbitmq:   stopped"
    fi
}

main() {
    local cmd="${1:-}" start
    [[ -n "$cmd" ]] || usage
    shift
    start="$(now_s)"
    case "$cmd" in
        status)
            cmd_status
            return 0
            ;;
        stop)
            pg_stop fast
            rabbit_stop
            ;;
        start-pg)
            require_pg_cluster
            pg_start
            ;;
        stop-pg)
            pg_stop "$(pg_mode_arg "${1:-fast}")"
            ;;
        restart-pg)
            require_pg_cluster
            local mode
            mode="$(pg_mode_arg "${1:-fast}")"
            pg_stop "$mode"
            pg_start
            ;;
        kill-pg)
            pg_kill
            ;;
        start-rabbit)
            require_rabbit_installed
            rabbit_start
            ;;
        stop-rabbit)
            rabbit_stop
            ;;
        restart-rabbit)
            require_rabbit_installed
            rabbit_stop
            rabbit_start
            ;;
        kill-rabbit)
            rabbit_kill
            ;;
        rabbitmqctl)
            require_rabbit_installed
            sluice_rabbit_env
            exec env "${SLUICE_RABBIT_ENV[@]}" "$SLUICE_RABBIT_BIN/rabbitmqctl" -n "$SLUICE_RABBIT_NODE" "$@"
            ;;
        psql)
            require_pg_cluster
            exec setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- \
                "$SLUICE_PG_BIN/psql" -X -h "$SLUICE_PG_RUN" -p "$SLUICE_PG_PORT" -U postgres "$@"
            ;;
        -h|--help|help)
            usage
            ;;
        *)
            log "unknown command '$cmd'"
            usage
            ;;
    esac
    log "$cmd done in $(elapsed_fmt "$start")s"
}

main "$@"
