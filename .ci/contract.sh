#!/usr/bin/env bash
# The published contract is true: schemathesis (all checks, all phases) against a real
# server on loopback, with realistic data, fails the build on any failure.
#
#   .ci/contract.sh            # what .ci/run does after the tests
#   SEED=1234 .ci/contract.sh  # another seed (CI uses a fixed one, so that a red run
#                              # replays; the seed is printed at the start)
#
# The server is the debug build the tests already made; its database (SQLite) and blobs
# live in a temporary directory that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

SCHEMATHESIS_VERSION=4.32.5
VENV="${TSUNAGU_CI_CACHE:-$HOME/.cache/tsunagu-ci}/venv-schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$VENV/bin/schemathesis" ]; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV (once per machine)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --locked -p tsunagu-server --bin tsunagu-server

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
BOOTSTRAP_PASSWORD="contract bootstrap $(date +%s%N)"
env -u TSUNAGU_DATABASE_URL \
    TSUNAGU_LISTEN="127.0.0.1:$PORT" \
    TSUNAGU_DATA_DIR="$WORK/data" \
    TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD="$BOOTSTRAP_PASSWORD" \
    TSUNAGU_LOG_LEVEL=warn \
    target/debug/tsunagu-server serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -sf "$URL/readyz" >/dev/null 2>&1 && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/server.log"
        echo "contract: the server did not start" >&2
        exit 1
    fi
    sleep 0.2
done

echo "== contract data (bootstrap admin → region admin, nurse, family, group, 内緒話, message, file)"
"$VENV/bin/python" .ci/contract/setup.py "$URL" "$BOOTSTRAP_PASSWORD" >"$WORK/ids.env"
set -a
# shellcheck disable=SC1091
. "$WORK/ids.env"
set +a

# One worker: the hook that restores the region policy after a fuzzed PATCH must not
# race a concurrent request. `--max-time` bounds the run (fuzzing and the stateful
# phase repeat until it is spent), so the whole step takes about three minutes.
SEED="${SEED:-20261201}"
echo "== schemathesis $SCHEMATHESIS_VERSION (all checks, all phases, seed $SEED)"
status=0
(
    cd "$WORK"
    export CONTRACT_URL="$URL" PYTHONPATH="$ROOT/.ci/contract" SCHEMATHESIS_HOOKS=hooks PYTHONDONTWRITEBYTECODE=1
    "$VENV/bin/schemathesis" --config-file "$ROOT/.ci/contract/schemathesis.toml" run "$URL/api/v1/openapi.json" \
        --phases examples,coverage,fuzzing,stateful \
        --seed "$SEED" \
        --max-time "${CONTRACT_MAX_TIME:-150}" \
        --workers 1 \
        --no-color
) || status=$?
# The run is only worth its verdict if its identity stayed signed in and in charge the
# whole time (no logout, password reset or lock-out of the token in use).
me=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN_TOKEN" "$URL/api/v1/admin/policy")
if [ "$me" != 200 ]; then
    echo "contract: the run's own token stopped working (GET /admin/policy answered $me)" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "== server log (errors and warnings)"
    tail -n 50 "$WORK/server.log"
    echo "contract: schemathesis found failures (replay with SEED=$SEED .ci/contract.sh)" >&2
fi
exit "$status"
