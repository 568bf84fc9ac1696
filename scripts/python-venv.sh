#!/usr/bin/env bash
# Makes the Python virtualenv the tests use (the public client, pytest, the
# EC2 emulator) and prints its path. It lives in
# ${FM_VENV:-$HOME/.cache/fleet-manager/venv}; packages are (re)installed only
# when tests/python/requirements.txt changed (a hash stamp is kept inside).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
    echo "$want" >"$STAMP"
fi
echo "$VENV"
