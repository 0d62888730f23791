#!/usr/bin/env bash
# What one `/ipxe/<mac>` request costs the server, on 127.0.0.1 only:
#
#   benches/http/cost.sh cpu [BIN]      # CPU per request, bootloader then nginx
#   benches/http/cost.sh allocs [BIN]   # allocations per request (heaptrack)
#
# `cpu`: the daemon (SQLite, a registered server without a deployment, as
# the network bench) under `wrk -t1 -c32` for 6 s, `perf stat -e
# task-clock` on it for the middle 4 s; then nginx serving the same bytes
# from a file, measured alike. Needs wrk, perf (linux-perf), nginx-light.
# `allocs`: the daemon under heaptrack for 5 s of the same load; prints
# the allocations per request and the first frames that make them (the
# ones of std, core and alloc left out). Needs heaptrack and c++filt.
# BIN defaults to target/release/bootloader. RUNS (default 3) for `cpu`.
# Ports 18080 and 18081 on 127.0.0.1; everything started is stopped.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${1:?cpu or allocs}
BIN=$(realpath "${2:-$HERE/../../target/release/bootloader}")
RUNS=${RUNS:-3}
MAC=52:54:00:00:00:01
WORK=$(mktemp -d /tmp/blcost.XXXX)
# nginx's workers read the copy as another user.
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# start_daemon DIR [WRAPPER...]: the daemon with a server registered.
start_daemon() {
    local d=$1; shift
    rm -rf "$d"; mkdir -p "$d/data" "$d/static"
    cat > "$d/cfg.toml" <<EOF
[server]
url = "http://127.0.0.1:18080"
data_dir = "$d/data"
[http]
listen = "127.0.0.1:18080"
static_dir = "$d/static"
[limits]
http_connections_per_source = 1000
EOF
    local token
    token=$("$BIN" --config "$d/cfg.toml" user add bench --staff 2>/dev/null | tail -n1)
    "$@" "$BIN" --config "$d/cfg.toml" serve > "$d/daemon.log" 2>&1 &
    DAEMON=$!
    PIDS+=("$DAEMON")
    for _ in $(seq 150); do
        curl -sf -o /dev/null http://127.0.0.1:18080/healthz && break
        sleep 0.2
    done
    local api=(curl -sSf -H "Authorization: Token $token" -H 'Content-Type: application/json')
    "${api[@]}" -d '{"name":"lab"}' http://127.0.0.1:18080/api/v1/locations > /dev/null
    "${api[@]}" -d "{\"fqdn\":\"n1.lab.example.com\",\"location\":\"lab\",\"interfaces\":[{\"name\":\"eth0\",\"mac\":\"$MAC\"}]}" \
        http://127.0.0.1:18080/api/v1/servers > /dev/null
}

# Under heaptrack, $DAEMON is heaptrack's shell: the daemon is found by
# its command line.
stop_daemon() {
    pkill -INT -f "$WORK/bl/cfg.toml serve" || true
    wait "$DAEMON" 2>/dev/null || true
}

# measure LABEL URL PIDS: wrk 6 s, task-clock of PIDS (comma-separated)
# over the middle 4 s.
measure() {
    local label=$1 url=$2 pids=$3
    wrk -t1 -c32 -d6s "$url" > "$WORK/wrk.txt" &
    local w=$!
    sleep 1
    perf stat -e task-clock -x, -o "$WORK/perf.txt" -p "$pids" -- sleep 4
    wait "$w"
    local rps ms
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    ms=$(awk -F, '/task-clock/ {print $1}' "$WORK/perf.txt")
    python3 -c "r = $rps * 4; print(f'$label: {$rps:,.0f} req/s, {$ms * 1000 / r:.1f} us of CPU per request')"
}

case "$MODE" in
cpu)
    mkdir -p "$WORK/www/ipxe" "$WORK/nginx"
    start_daemon "$WORK/bl"
    curl -sf -o "$WORK/www/ipxe/$MAC" "http://127.0.0.1:18080/ipxe/$MAC"
    for run in $(seq "$RUNS"); do
        measure "bootloader $run" "http://127.0.0.1:18080/ipxe/$MAC" "$DAEMON"
    done
    stop_daemon
    cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    default_type text/plain;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:18081;
        root $WORK/www;
        location / { }
    }
}
EOF
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
    PIDS+=("$!")
    sleep 1
    curl -sf "http://127.0.0.1:18081/ipxe/$MAC" | cmp -s - "$WORK/www/ipxe/$MAC"
    workers=$(pgrep -d, -P "${PIDS[-1]}")
    for run in $(seq "$RUNS"); do
        measure "nginx $run" "http://127.0.0.1:18081/ipxe/$MAC" "$workers"
    done
    ;;
allocs)
    start_daemon "$WORK/bl" heaptrack -o "$WORK/heap"
    wrk -t2 -c64 -d5s "http://127.0.0.1:18080/ipxe/$MAC" > "$WORK/wrk.txt"
    stop_daemon
    heaptrack_print -f "$WORK"/heap*.zst -p 0 -a 0 -T 0 -F "$WORK/stacks.txt" \
        --flamegraph-cost-type allocations > /dev/null
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    python3 "$HERE/allocs.py" "$WORK/stacks.txt" "$requests"
    ;;
*)
    echo "usage: $0 cpu|allocs [BIN]" >&2
    exit 2
    ;;
esac
echo "raw output in $WORK"
