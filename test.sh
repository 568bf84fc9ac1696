#!/usr/bin/env bash
# Runs every check and test: format, lints, Rust tests on SQLite and on
# PostgreSQL, the end-to-end suite that drives the real server with the
# public Python client on both backends and the console in a headless
# Chromium, and schemathesis against the served OpenAPI document. Starts
# PostgreSQL if it is down, creates the Python virtualenv it needs and
# installs Chromium.
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export FM_TEST_PG_URL="${FM_TEST_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

step() { printf '\n==> %s\n' "$*"; }

step "PostgreSQL"
bash scripts/ensure-postgres.sh

step "Python virtualenv (the public client, pytest, the EC2 emulator, selenium)"
bash scripts/python-venv.sh >/dev/null

step "Chromium and its WebDriver (the console's browser suite)"
bash scripts/ensure-chromium.sh

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "Rust tests on SQLite"
FM_TEST_BACKEND=sqlite cargo test --workspace --locked

step "Rust tests on PostgreSQL"
FM_TEST_BACKEND=postgres cargo test --workspace --locked

step "OpenAPI document against the server (schemathesis, SQLite)"
FM_BIN="$CARGO_TARGET_DIR/debug/fleet-manager" bash tests/python/schemathesis.sh

step "end-to-end: the public Python client against the real server (SQLite and PostgreSQL; the lifecycle also on the aws cloud)"
FM_BIN="$CARGO_TARGET_DIR/debug/fleet-manager" FM_TEST_REQUIRE_PG=1 bash tests/python/run.sh
