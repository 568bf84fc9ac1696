#!/usr/bin/env bash
# Builds the workspace (server, agent, stand-in node kit) and runs FM on the
# embedded default: SQLite under ./fm-data, http://127.0.0.1:10000, the
# `local` cloud. Extra arguments go to `fleet-manager serve`.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --workspace --bins --locked
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/fleet-manager" serve "$@"
