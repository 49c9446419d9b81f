#!/usr/bin/env bash
# Start the whole Sluice system on this machine:
#   1. deploy/provision.sh (private PostgreSQL + RabbitMQ, installed if needed)
#   2. cargo build --release -p sluice-gateway -p sluice-jobs
#   3. sluice-jobs migrate
#   4. sluice-jobs (the job runner) and sluice-gateway in the background, their
#      output on this terminal prefixed with [runner] / [gateway]. The gateway
#      runs in development mode (SLUICE_GATEWAY__DEV_MODE=true unless set):
#      it serves the live demo page at http://<listen>/demo/ and signs
#      development tokens. Production deployments leave dev mode off.
# Ctrl-C (or SIGTERM) stops both. If either exits, the other is stopped and
# this script exits with the status of the one that died.
#
# Works from any directory. Settings: see deploy/lib.sh; SLUICE_DATABASE__URL
# defaults to the private PostgreSQL's owner role, which migrates, and
# without SLUICE_AMQP__URL and SLUICE_DATABASE__URL the gateway and the
# runner each log in to the private RabbitMQ and PostgreSQL as their own
# user (sluice_gateway, sluice_runner).
set -euo pipefail

LOG_PREFIX=start
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# How long to wait for the processes to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT="${SLUICE_STOP_TIMEOUT:-30}"

cd "$SLUICE_REPO_ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$SLUICE_REPO_ROOT/target}"

log "provisioning PostgreSQL and RabbitMQ"
bash "$SLUICE_DEPLOY_DIR/provision.sh"

log "building release binaries"
cargo build --release -p sluice-gateway -p sluice-jobs

: "${SLUICE_DATABASE__URL:=$SLUICE_PG_URL}"
export SLUICE_DATABASE__URL
# The private broker has a user for each process, with only what it needs;
# a SLUICE_AMQP__URL given from outside is used by both.
if [[ -n "${SLUICE_AMQP__URL:-}" ]]; then
    GATEWAY_AMQP_URL="$SLUICE_AMQP__URL"
    RUNNER_AMQP_URL="$SLUICE_AMQP__URL"
else
    GATEWAY_AMQP_URL="$SLUICE_GATEWAY_AMQP_URL"
    RUNNER_AMQP_URL="$SLUICE_RUNNER_AMQP_URL"
fi

# Likewise a database role each; the owner's URL (SLUICE_DATABASE__URL)
# only migrates. A SLUICE_DATABASE__URL given from outside is used by all.
if [[ -n "${SLUICE_DATABASE__URL:-}" && "$SLUICE_DATABASE__URL" != "$SLUICE_PG_URL" ]]; then
    GATEWAY_PG_URL="$SLUICE_DATABASE__URL"
    RUNNER_PG_URL="$SLUICE_DATABASE__URL"
else
    GATEWAY_PG_URL="$SLUICE_GATEWAY_PG_URL"
    RUNNER_PG_URL="$SLUICE_RUNNER_PG_URL"
fi

JOBS_BIN="$TARGET_DIR/release/sluice-jobs"
GATEWAY_BIN="$TARGET_DIR/release/sluice-gateway"
[[ -x "$JOBS_BIN" ]] || die "$JOBS_BIN was not built"
[[ -x "$GATEWAY_BIN" ]] || die "$GATEWAY_BIN was not built"

log "running database migrations"
"$JOBS_BIN" migrate

RUNNER_PID=""
GATEWAY_PID=""

# SIGTERM both (if alive), wait up to STOP_TIMEOUT seconds, then SIGKILL.
stop_children() {
    local pid start
    for pid in "$RUNNER_PID" "$GATEWAY_PID"; do
        if [[ -n "$pid" ]] && pid_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    start="$(now_s)"
    for pid in "$RUNNER_PID" "$GATEWAY_PID"; do
        [[ -n "$pid" ]] || continue
        while pid_alive "$pid"; do
            if (( $(elapsed_since "$start") >= STOP_TIMEOUT )); then
                log "pid $pid did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    done
    for pid in "$RUNNER_PID" "$GATEWAY_PID"; do
        [[ -n "$pid" ]] || continue
        wait "$pid" 2>/dev/null || true
    done
}

# shellcheck disable=SC2317  # invoked by the traps below
on_signal() {
    local sig="$1" code="$2"
    trap - INT TERM
    log "received SIG$sig; stopping runner and gateway"
    stop_children
    log "stopped"
    exit "$code"
}
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

log "starting sluice-jobs"
SLUICE_AMQP__URL="$RUNNER_AMQP_URL" SLUICE_DATABASE__URL="$RUNNER_PG_URL" "$JOBS_BIN" > >(sed -u 's/^/[runner] /') 2>&1 &
RUNNER_PID=$!
# The gateway shares this machine's CPUs with PostgreSQL and the runner:
# realtime round-robin scheduling lets it answer at once while a batch runs
# (see the systemd unit and docs/benchmarks.md). Needs root or CAP_SYS_NICE;
# SLUICE_GATEWAY_RT_PRIORITY=0 turns it off.
GATEWAY_PREFIX=()
RT_PRIORITY="${SLUICE_GATEWAY_RT_PRIORITY:-10}"
if [[ "$RT_PRIORITY" != 0 ]]; then
    if chrt -r "$RT_PRIORITY" true 2>/dev/null; then
        GATEWAY_PREFIX=(chrt -r "$RT_PRIORITY")
    else
        log "cannot use realtime scheduling here (needs root or CAP_SYS_NICE); the gateway runs at normal priority"
    fi
fi
log "starting sluice-gateway${GATEWAY_PREFIX[*]:+ under ${GATEWAY_PREFIX[*]}}"
SLUICE_GATEWAY__DEV_MODE="${SLUICE_GATEWAY__DEV_MODE:-true}" SLUICE_AMQP__URL="$GATEWAY_AMQP_URL" \
    SLUICE_DATABASE__URL="$GATEWAY_PG_URL" \
    "${GATEWAY_PREFIX[@]}" "$GATEWAY_BIN" > >(sed -u 's/^/[gateway] /') 2>&1 &
GATEWAY_PID=$!
log "runner pid $RUNNER_PID, gateway pid $GATEWAY_PID; Ctrl-C stops both"
if [[ "${SLUICE_GATEWAY__DEV_MODE:-true}" == "true" ]]; then
    log "demo page: http://${SLUICE_GATEWAY__LISTEN:-127.0.0.1:8080}/demo/ (development mode)"
fi

rc=0
wait -n "$RUNNER_PID" "$GATEWAY_PID" || rc=$?
trap - INT TERM
if ! pid_alive "$RUNNER_PID"; then
    log "sluice-jobs (runner) exited with status $rc; stopping the gateway"
else
    log "sluice-gateway exited with status $rc; stopping the runner"
fi
stop_children
exit "$rc"
