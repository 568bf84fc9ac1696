#!/usr/bin/env bash
# Runs the end-to-end suite against the real fleet-manager binary, through the
# public Python client (dataikuapi.fmclient).
#
#   FM_BIN=/path/to/fleet-manager bash tests/python/run.sh [pytest args...]
#
# The virtualenv comes from scripts/python-venv.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$(bash "$ROOT/scripts/python-venv.sh")"

cd "$ROOT"
# Keep pytest's cache next to the suite, not at the repository root.
exec "$VENV/bin/python" -m pytest -q -o cache_dir=tests/python/.pytest_cache tests/python "$@"
