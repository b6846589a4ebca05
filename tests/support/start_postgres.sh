#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the tests (Debian's packages, as root) and
# print its SQLAlchemy URL on stdout. Prints nothing and exits 0 when none can be
# started here: the Postgres variants of the store tests then report a skip.
set -u
PORT=${QEC_PG_PORT:-54329}
ROOT=${QEC_PG_ROOT:-/tmp/qec-test-postgres}
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/postgres"
log() { echo "start_postgres: $*" >&2; }

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pgbin)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing postgresql (Debian package)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2 || true
  fi
fi
BIN=$(pgbin)
[ -n "$BIN" ] || { log "no PostgreSQL server available; skipping"; exit 0; }
id postgres >/dev/null 2>&1 || { log "no postgres user; skipping"; exit 0; }

if "$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q 2>/dev/null; then echo "$URL"; exit 0; fi
rm -rf "$ROOT" && mkdir -p "$ROOT" && chown postgres "$ROOT"
run_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
run_pg "'$BIN/initdb' -D '$ROOT/data' -A trust -U postgres" >/dev/null 2>&1 || { log "initdb failed; skipping"; exit 0; }
run_pg "'$BIN/pg_ctl' -D '$ROOT/data' -l '$ROOT/log' -w -t 30 \
  -o \"-p $PORT -k $ROOT -c listen_addresses=127.0.0.1 -c fsync=off\" start" >/dev/null 2>&1 \
  || { log "server did not start (see $ROOT/log); skipping"; exit 0; }
echo "$URL"
