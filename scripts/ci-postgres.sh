# Sourced by .ci/run: start a throwaway PostgreSQL server for the collector's PostgreSQL tests
# and export LITERAL_TEST_POSTGRES_URL. Without PostgreSQL binaries it does nothing (the
# PostgreSQL tests then report why they cannot run).
_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "${LITERAL_TEST_POSTGRES_URL:-}" ]; then
    :  # provided by the environment
elif [ -n "$_pg_bin" ] && [ -x "$_pg_bin/initdb" ]; then
    _pg_dir=$(mktemp -d /tmp/literal-agent-pg.XXXXXX)
    _pg_port=${LITERAL_TEST_POSTGRES_PORT:-55432}
    _as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
    [ "$(id -u)" = 0 ] && chown postgres "$_pg_dir"
    _as_pg "'$_pg_bin/initdb' -D '$_pg_dir/data' -A trust -U postgres >/dev/null"
    _as_pg "'$_pg_bin/pg_ctl' -D '$_pg_dir/data' -l '$_pg_dir/log' -o '-p $_pg_port -k $_pg_dir -c listen_addresses=127.0.0.1 -c fsync=off' -w start >/dev/null"
    export LITERAL_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$_pg_port/postgres"
    trap "_as_pg \"'$_pg_bin/pg_ctl' -D '$_pg_dir/data' -m immediate stop\" >/dev/null 2>&1; rm -rf '$_pg_dir'" EXIT
    echo "PostgreSQL for tests: $LITERAL_TEST_POSTGRES_URL"
fi
