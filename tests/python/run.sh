#!/usr/bin/env bash
# Runs the end-to-end suite against the real fleet-manager binary, through the
# public Python client (dataikuapi.fmclient).
#
#   FM_BIN=/path/to/fleet-manager bash tests/python/run.sh [pytest args...]
#
# The virtualenv lives in ${FM_VENV:-$HOME/.cache/fleet-manager/venv}; it is
# created when missing, and packages are (re)installed only when
# requirements.txt changed (a hash stamp is kept inside the venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REQ="$ROOT/tests/python/requirements.txt"
VENV="${FM_VENV:-$HOME/.cache/fleet-manager/venv}"
STAMP="$VENV/.fm-requirements.sha256"

if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    rm -f "$STAMP"
fi

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$want" >"$STAMP"
fi

cd "$ROOT"
# Keep pytest's cache next to the suite, not at the repository root.
exec "$VENV/bin/python" -m pytest -q -o cache_dir=tests/python/.pytest_cache tests/python "$@"
