#!/usr/bin/env bash
# A local three-node RabbitMQ cluster on private ports, for trying and
# testing Sluice against a cluster on one machine. Same installation as
# deploy/provision.sh (run it first), separate nodes and state:
#   node N (1..3): sluice-cN@localhost, AMQP port SLUICE_CLUSTER_PORT + 2(N-1)
#   (default 25690, 25692, 25694), distribution port one above its AMQP port,
#   state in $SLUICE_STATE_DIR/rabbit-cluster/cN.
# Quorum queues declared on it are replicated over the three nodes.
#
# Usage: deploy/cluster.sh COMMAND [ARGS]
#   start             start the three nodes (if not running), join them, ensure the user
#   stop              stop every node cleanly
#   start-node N      start node N again (it rejoins the cluster by itself)
#   kill-node N       kill -9 node N's beam.smp, wait until it is gone
#   leader QUEUE      print the node that leads quorum queue QUEUE
#   urls              print the AMQP URLs of the three nodes, comma-separated
#   status            the cluster's status as node 1 sees it
#   rabbitmqctl N ARGS...  rabbitmqctl against node N
set -euo pipefail

LOG_PREFIX=cluster
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${SLUICE_CLUSTER_PORT:=25690}"
CLUSTER_DIR="$SLUICE_STATE_DIR/rabbit-cluster"
NODES=(1 2 3)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

# Points lib.sh's RabbitMQ functions at node $1.
use_node() {
    local n="$1"
    [[ "$n" =~ ^[123]$ ]] || die "node must be 1, 2 or 3 (got '$n')"
    SLUICE_RABBIT_NODE="sluice-c${n}@localhost"
    SLUICE_RABBIT_DIR="$CLUSTER_DIR/c${n}"
    SLUICE_RABBIT_HOME="$SLUICE_RABBIT_DIR/home"
    SLUICE_RABBIT_CONF="$SLUICE_RABBIT_DIR/rabbitmq.conf"
    SLUICE_RABBIT_PLUGINS_FILE="$SLUICE_RABBIT_DIR/enabled_plugins"
    SLUICE_RABBIT_PID_FILE="$SLUICE_RABBIT_DIR/node.pid"
    SLUICE_RABBIT_LOG_DIR="$SLUICE_RABBIT_DIR/log"
    SLUICE_AMQP_PORT=$((SLUICE_CLUSTER_PORT + 2 * (n - 1)))
    SLUICE_AMQP_DIST_PORT=$((SLUICE_AMQP_PORT + 1))
    # Plain AMQP only: the private node's amqps port is the private node's.
    SLUICE_AMQPS_PORT=""
}

node_url() {
    echo "amqp://${SLUICE_AMQP_USER}:${SLUICE_AMQP_PASSWORD}@127.0.0.1:$((SLUICE_CLUSTER_PORT + 2 * ($1 - 1)))/%2f"
}

# Every node must share one Erlang cookie: node 1's, made before any starts.
share_cookie() {
    local n="$1"
    local first="$CLUSTER_DIR/c1/home/.erlang.cookie"
    [[ "$n" == 1 ]] && return 0
    mkdir -p "$CLUSTER_DIR/c${n}/home"
    chmod 0700 "$CLUSTER_DIR/c${n}/home"
    if ! cmp -s "$first" "$CLUSTER_DIR/c${n}/home/.erlang.cookie" 2>/dev/null; then
        rm -f "$CLUSTER_DIR/c${n}/home/.erlang.cookie"
        cp "$first" "$CLUSTER_DIR/c${n}/home/.erlang.cookie"
        chmod 0400 "$CLUSTER_DIR/c${n}/home/.erlang.cookie"
    fi
}

start_node() {
    local n="$1"
    (use_node 1 && rabbit_prepare_dirs)
    share_cookie "$n"
    (use_node "$n" && rabbit_start)
}

# Joins node $1 to node 1's cluster unless it is a member already.
join_node() {
    local n="$1" status
    status="$(use_node 1 && rabbitmqctl_private -q cluster_status --formatter json 2>/dev/null)" || status=""
    if [[ "$status" == *"sluice-c${n}@localhost"* ]]; then
        return 0
    fi
    log "joining sluice-c${n}@localhost to sluice-c1@localhost"
    (
        use_node "$n"
        rabbitmqctl_private -q stop_app
        rabbitmqctl_private -q reset
        rabbitmqctl_private -q join_cluster sluice-c1@localhost
        rabbitmqctl_private -q start_app
        rabbit_wait_ready
    )
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
rabbit_ensure_installed_or_die() {
    [[ -x "$SLUICE_RABBIT_BIN/rabbitmq-server" ]] \
        || die "RabbitMQ is not installed; run deploy/provision.sh first"
}

case "$cmd" in
    start)
        rabbit_ensure_installed_or_die
        START="$(now_s)"
        for n in "${NODES[@]}"; do start_node "$n"; done
        for n in 2 3; do join_node "$n"; done
        (use_node 1 && rabbit_ensure_user) || die "could not create user '${SLUICE_AMQP_USER}' on the cluster"
        log "cluster of 3 nodes up in $(elapsed_fmt "$START")s: $(for n in "${NODES[@]}"; do node_url "$n"; done | paste -sd, -)"
        ;;
    stop)
        for n in 3 2 1; do (use_node "$n" && rabbit_stop); done
        ;;
    start-node)
        start_node "${1:?node number}"
        ;;
    kill-node)
        (use_node "${1:?node number}" && rabbit_kill)
        ;;
    leader)
        queue="${1:?queue name}"
        # One line per queue: name and leader; keep the one asked for.
        listing="$( (use_node 1 && rabbitmqctl_private -q list_queues name leader --no-table-headers 2>/dev/null) \
            || (use_node 2 && rabbitmqctl_private -q list_queues name leader --no-table-headers))"
        awk -v q="$queue" '$1 == q { print $2; found = 1 } END { exit !found }' <<<"$listing" \
            || die "no quorum queue named $queue"
        ;;
    urls)
        for n in "${NODES[@]}"; do node_url "$n"; done | paste -sd, -
        ;;
    status)
        (use_node 1 && rabbitmqctl_private cluster_status)
        ;;
    rabbitmqctl)
        n="${1:?node number}"
        shift
        (use_node "$n" && rabbitmqctl_private "$@")
        ;;
    *)
        usage
        ;;
esac
