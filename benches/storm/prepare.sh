#!/usr/bin/env bash
# Registering and starting only: N servers imported by CSV (1,000 a
# request) and one deployment started for each (POSTS requests in flight),
# against a daemon on 127.0.0.1 with DHCP and TFTP off, as `run.sh`'s
# prepare does inside its lab. Prints `bootstorm prepare`'s figures, the
# CPU the daemon and PostgreSQL's live backends used meanwhile, and the
# daemon's RSS, anonymous and file-backed (IDLE_WAIT seconds after the
# last start).
#
#   benches/storm/prepare.sh TAG [sqlite|postgres]
#
# Knobs: BIN, STORM_BIN (release builds), N (10000), POSTS (4), IDLE_WAIT
# (0), PG_SET (a setting for the test database, e.g.
# synchronous_commit=off, for experiments), BL_RUST_LOG, KEEP=1 (keep
# the database). PostgreSQL is the machine's, on 127.0.0.1 as user
# postgres; the database prep_TAG is made anew and dropped at the end.
# Binds 127.0.0.1 only (shared/TESTING.md).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TAG=$1
DB=${2:-sqlite}
BIN=${BIN:-$REPO/target/release/bootloader}
STORM_BIN=${STORM_BIN:-$REPO/target/release/bootstorm}
N=${N:-10000}
D=$(mktemp -d /tmp/prep-$TAG.XXXX)
mkdir -p "$D/data"
PORT=$((18000 + RANDOM % 1000))
dbsec=""
if [ "$DB" = postgres ]; then
    db=prep_$TAG
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" >/dev/null
    [ -n "${PG_SET:-}" ] && psql -h 127.0.0.1 -U postgres -qc "ALTER DATABASE $db SET $PG_SET" >/dev/null
    dbsec=$(printf '[database]\nurl = "postgres://postgres@127.0.0.1/%s"\n' "$db")
fi
cat > "$D/cfg.toml" <<EOC
[server]
url = "http://127.0.0.1:$PORT"
data_dir = "$D/data"
$dbsec
[http]
listen = "127.0.0.1:$PORT"
EOC
token=$("$BIN" --config "$D/cfg.toml" user add storm --staff 2>>"$D/cli.log" | tail -n1)
env ${BL_RUST_LOG:+RUST_LOG=$BL_RUST_LOG} MALLOC_ARENA_MAX=2 "$BIN" --config "$D/cfg.toml" serve > "$D/daemon.log" 2>&1 &
pid=$!
stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ "$DB" = postgres ] && [ -z "${KEEP:-}" ]; then
        psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS prep_$TAG" >/dev/null 2>&1 || true
    fi
}
trap stop EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo $t; }
hz=$(getconf CLK_TCK)
c0=$(ticks $pid); p0=$(pg_ticks)
timeout 900 "$STORM_BIN" prepare --api "http://127.0.0.1:$PORT" --token "$token" --machines "$N" \
    --cidr 10.88.0.0/16 --gateway 10.88.0.1 --pool 10.88.64.1-10.88.127.254 --concurrency "${POSTS:-4}"
c1=$(ticks $pid); p1=$(pg_ticks)
echo "daemon CPU $(( (c1 - c0) * 1000 / hz )) ms; PostgreSQL's live backends $(( (p1 - p0) * 1000 / hz )) ms"
sleep "${IDLE_WAIT:-0}"
mem() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$pid/status"; }
echo "daemon VmRSS: $(mem VmRSS) kB (heap and stacks $(mem RssAnon) kB, files $(mem RssFile) kB)"
echo "outputs: $D"
