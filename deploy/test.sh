#!/usr/bin/env bash
# Run the whole Sluice test suite:
#   1. deploy/provision.sh with SLUICE_PG_FAST=1 (no fsync; tests only)
#   2. the tests' tools: openssl (throwaway TLS certificates), Debian's
#      python3-psycopg (the Python publishing example) and
#      chromium when missing, and `npm ci` in proto/js (from its
#      package-lock.json)
#   3. `npm test` in proto/js: generated types and built dist/ up to date,
#      client unit tests (fake socket)
#   4. cargo machete: no crate names a dependency it does not use, and
#      cargo deny (deny.toml): crate sources, licenses, banned crates, and
#      advisories when RustSec's database can be fetched (both installed
#      with cargo install when missing)
#   5. cargo build --workspace --all-targets: the binaries the end-to-end
#      tests run and the tests themselves, in one build with one feature set
#      (building --bins alone resolved other features and built twice)
#   6. sluice-jobs migrate, as the database's owner
#   7. cargo nextest run --workspace --no-fail-fast [ARGS...]
#      (cargo test --workspace --no-fail-fast [ARGS...] if nextest is missing)
# Extra arguments go to the test runner. Exits non-zero if `npm test`,
# cargo machete, cargo deny or the test runner failed.
#
# Exported for the tests: SLUICE_STATE_DIR, SLUICE_PG_PORT, SLUICE_AMQP_PORT,
# SLUICE_AMQP_DIST_PORT, SLUICE_PG_FAST, SLUICE_REPO_ROOT,
# SLUICE_SERVICES_SH (path of deploy/services.sh, to restart/kill services),
# SLUICE_DATABASE__URL, SLUICE_AMQP__URL, SLUICE_TLS_CA, SLUICE_DB_TLS_USER,
# SLUICE_AMQPS_PORT, SLUICE_GATEWAY_AMQP_URL, SLUICE_RUNNER_AMQP_URL,
# SLUICE_GATEWAY_PG_URL, SLUICE_RUNNER_PG_URL, SLUICE_DB_CERT_USER,
# SLUICE_PG_CLIENT_CERT, SLUICE_PG_CLIENT_KEY.
set -euo pipefail

: "${SLUICE_PG_FAST:=1}"
export SLUICE_PG_FAST

LOG_PREFIX="test"
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$SLUICE_REPO_ROOT"
TEST_START="$(now_s)"

log "provisioning PostgreSQL and RabbitMQ (SLUICE_PG_FAST=$SLUICE_PG_FAST)"
bash "$SLUICE_DEPLOY_DIR/provision.sh"

: "${SLUICE_DATABASE__URL:=$SLUICE_PG_URL}"
: "${SLUICE_AMQP__URL:=$SLUICE_AMQP_URL}"
SLUICE_SERVICES_SH="$SLUICE_DEPLOY_DIR/services.sh"
export SLUICE_DATABASE__URL SLUICE_AMQP__URL SLUICE_SERVICES_SH SLUICE_REPO_ROOT
# For the TLS tests: the throwaway CA provision.sh made, the TLS-only
# database role, and the broker's amqps port.
export SLUICE_TLS_CA SLUICE_DB_TLS_USER SLUICE_AMQPS_PORT
# ... and the certificate-only role with its client certificate and key.
export SLUICE_DB_CERT_USER SLUICE_PG_CLIENT_CERT SLUICE_PG_CLIENT_KEY
# Each process its own broker user, as in production (the harness gives the
# gateways and the runner these unless a test says otherwise).
export SLUICE_GATEWAY_AMQP_URL SLUICE_RUNNER_AMQP_URL
# And its own database role; SLUICE_DATABASE__URL is the owner's, which
# migrates (below) and which the tests' own assertions use.
export SLUICE_GATEWAY_PG_URL SLUICE_RUNNER_PG_URL

if ! command -v openssl >/dev/null 2>&1; then
    log "installing openssl (the tests make throwaway TLS certificates with it)"
    apt_install openssl
fi
if [[ ! -x /usr/bin/chromium ]]; then
    log "installing chromium (the browser end-to-end test drives it)"
    apt_install chromium
fi
if ! /usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1; then
    log "installing python3-psycopg (the Python publishing example runs in a test)"
    apt_install python3-psycopg
fi
log "npm ci in proto/js"
phase_start="$(now_s)"
(cd proto/js && npm ci --no-audit --no-fund)
log "npm ci done in $(elapsed_fmt "$phase_start")s"

npm_rc=0
log "running: npm test in proto/js (type and dist drift checks, client unit tests)"
(cd proto/js && npm test) || npm_rc=$?
log "npm test finished with exit code $npm_rc"

# Unused dependencies fail the run (cargo-machete reads each crate's
# sources for the crates its manifest names).
if ! command -v cargo-machete >/dev/null 2>&1; then
    log "installing cargo-machete (checks for unused dependencies)"
    cargo install cargo-machete --locked --quiet || log "WARNING: could not install cargo-machete; skipping the unused-dependency check"
fi
machete_rc=0
if command -v cargo-machete >/dev/null 2>&1; then
    log "running: cargo machete"
    cargo machete || machete_rc=$?
fi

# Where every crate comes from, its license, banned crates (deny.toml),
# and, when RustSec's database can be fetched from github.com, known
# advisories.
if ! command -v cargo-deny >/dev/null 2>&1; then
    log "installing cargo-deny (checks crate sources, licenses, bans and advisories)"
    cargo install cargo-deny --locked --quiet || log "WARNING: could not install cargo-deny; skipping the dependency checks"
fi
deny_rc=0
if command -v cargo-deny >/dev/null 2>&1; then
    log "running: cargo deny check bans licenses sources"
    cargo deny --log-level error check bans licenses sources || deny_rc=$?
    if timeout 60 cargo deny fetch db >/dev/null 2>&1; then
        log "running: cargo deny check advisories"
        cargo deny --log-level error check advisories || deny_rc=$?
    else
        log "WARNING: RustSec's advisory database could not be fetched (github.com unreachable?); advisories not checked"
    fi
fi

log "building workspace binaries"
phase_start="$(now_s)"
cargo build --workspace --all-targets
log "build done in $(elapsed_fmt "$phase_start")s"

# Once, as the owner: the gateways and runners the tests start log in as
# roles that may not migrate, and find the schema current.
log "running database migrations"
"${CARGO_TARGET_DIR:-$SLUICE_REPO_ROOT/target}/debug/sluice-jobs" migrate

rc=0
phase_start="$(now_s)"
if cargo nextest --version >/dev/null 2>&1; then
    log "running: cargo nextest run --workspace --no-fail-fast $*"
    cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
else
    log "cargo nextest not found; running: cargo test --workspace --no-fail-fast $*"
    cargo test --workspace --no-fail-fast "$@" || rc=$?
fi
log "tests finished with exit code $rc in $(elapsed_fmt "$phase_start")s (total $(elapsed_fmt "$TEST_START")s)"
if (( rc == 0 && machete_rc != 0 )); then
    log "cargo machete found unused dependencies (exit code $machete_rc)"
    rc="$machete_rc"
fi
if (( rc == 0 && deny_rc != 0 )); then
    log "cargo deny found a banned crate, a license or source not allowed, or an advisory (exit code $deny_rc)"
    rc="$deny_rc"
fi
if (( rc == 0 && npm_rc != 0 )); then
    log "npm test in proto/js failed (exit code $npm_rc)"
    rc="$npm_rc"
fi
exit "$rc"
