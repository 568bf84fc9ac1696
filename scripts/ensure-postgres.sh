#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 and that
# FM_TEST_PG_URL (default postgres://postgres:postgres@127.0.0.1:5432/postgres)
# can log in: starts the local cluster if it is down and, where the server
# wants a password over TCP, gives the postgres user the one in the URL.
set -euo pipefail
url="${FM_TEST_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL is not installed; installing it" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
fi
pg_isready -h 127.0.0.1 -p 5432

if ! psql "$url" -qAtc 'select 1' >/dev/null 2>&1; then
  password=$(python3 -c 'import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).password or "")' "$url")
  echo "setting the postgres user's password for TCP logins" >&2
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD '$password'\"" >/dev/null
fi
psql "$url" -qAtc 'select version()'
