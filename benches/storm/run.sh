#!/usr/bin/env bash
# Boot storm: MACHINES machines power on over OVER seconds and boot as a
# PXE ROM then iPXE would (benches/storm/src: DHCP relayed and broadcast,
# the NBP over TFTP with the tsize probe and its abort, iPXE's DHCP, the
# script, kernel and initrd over HTTP with Range, three callbacks), against
# bootloader (every machine registered, every one with an active
# deployment) and against the classic stack (dnsmasq for DHCP and TFTP,
# nginx for HTTP) in the same run. See BENCHMARKS.md for the figures.
#
#   sudo benches/storm/run.sh [bootloader] [classic]      (default: both)
#
# Knobs (environment): MACHINES (10000), OVER (seconds, 20), DHCP_PATHS
# (mixed: even machines relayed, odd broadcast; or relayed, broadcast),
# SOURCES (how many client addresses the machines' TFTP and HTTP traffic
# comes from, 32), KERNEL_KB (128), INITRD_KB (256), BENCH_DB=postgres
# (PG_VIA=socat: through a socat bridge, not the server's own socket),
# BIN (bootloader binary), STORM_BIN (bootstorm binary; both built with
# cargo build --release if missing), OUT (results directory), NO_INSTALL=1,
# QUIET_WAIT / QUIET_BUSY (see benches/lab.sh), PERF=1 (perf record the
# servers during the storm; PERF_ARGS adds to its arguments, e.g. -g),
# PERF_STAT=1 (count the servers' context switches and system calls during
# the storm, per machine, with perf stat), THREADS=1 (the servers' CPU
# and context switches during the storm by kind of thread, from /proc),
# BL_RUST_LOG (RUST_LOG for bootloader, e.g. sqlx::query=debug), BL_ENV
# (more VAR=value for bootloader, e.g. MALLOC_ARENA_MAX=2), POSTS (POSTs
# in flight at once while starting the deployments, 4).
#
# After bootloader's run the daemon is killed (SIGKILL) and started again,
# and `bootstorm check` reads back every deployment's state and every lease
# a machine was acknowledged: durable means still there after the kill.
#
# Network safety (shared/TESTING.md): the lab is benches/lab.sh's; servers
# run only inside its server namespace, the simulator only inside its client
# namespace; every run is bounded by `timeout` and by its machine count and
# deadline, and everything is removed on exit, also on failure.

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

MACHINES="${MACHINES:-10000}"
OVER="${OVER:-20}"
POSTS="${POSTS:-4}"
DHCP_PATHS="${DHCP_PATHS:-mixed}"
SOURCES="${SOURCES:-32}"
KERNEL_KB="${KERNEL_KB:-128}"
INITRD_KB="${INITRD_KB:-256}"
BENCH_DB="${BENCH_DB:-sqlite}"
BIN="${BIN:-$REPO/target/release/bootloader}"
STORM_BIN="${STORM_BIN:-$REPO/target/release/bootstorm}"
DEADLINE=180
HTTP_PORT=8080
NGINX_PORT=8081

PEERS=("$@")
[ ${#PEERS[@]} -eq 0 ] && PEERS=(bootloader classic)

OUT="${OUT:-$(mktemp -d /tmp/blstorm.XXXX)}"
mkdir -p "$OUT"

. "$HERE/../lab.sh"

need_pkgs() {
    local missing=()
    command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
    command -v nginx >/dev/null || missing+=(nginx-light)
    [ -e /usr/lib/ipxe/undionly.kpxe ] || missing+=(ipxe)
    command -v curl >/dev/null || missing+=(curl)
    command -v ss >/dev/null || missing+=(iproute2)
    echo "${missing[@]}"
}
# shellcheck disable=SC2046
install_peers $(need_pkgs)

for b in "$BIN:bootloader" "$STORM_BIN:bootstorm"; do
    if [ ! -x "${b%%:*}" ]; then
        log "building ${b##*:} (cargo build --release)"
        (cd "$REPO" && cargo build --release -p "${b##*:}")
    fi
done
BIN_BUILT="$(date -u -r "$BIN" +%FT%TZ)"
BIN="$(private_copy "$BIN" bootloader)"
STORM="$(private_copy "$STORM_BIN" bootstorm)"

# ---------------------------------------------------------------- lab
lab_up
WORK="$OUT/work"
mkdir -p "$WORK"
LAST_SOURCE="10.88.0.$((9 + SOURCES))"
for k in $(seq 10 $((9 + SOURCES))); do
    ip -n "$CNS" addr add "10.88.0.$k/16" dev eth0
done
# Many short connections from few addresses: the client side may reuse
# ports in TIME_WAIT (both settings are the client namespace's own).
cx sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1
# Every machine holds a UDP socket or a TCP connection or two at a time:
# as many files as this shell may have (a container may cap the hard limit).
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
ulimit -n "$NOFILE"

# ---------------------------------------------------------------- files
TROOT="$WORK/tftp-root"
WWW="$WORK/www"
mkdir -p "$TROOT" "$WWW/static/storm"
cp /usr/lib/ipxe/undionly.kpxe "$TROOT/"
head -c $((KERNEL_KB * 1024)) /dev/urandom > "$WWW/static/storm/vmlinuz"
head -c $((INITRD_KB * 1024)) /dev/urandom > "$WWW/static/storm/initrd.img"
pg_bridge

# With BENCH_DB=postgres: CPU time (ms) used so far by the machine's
# PostgreSQL and the socat bridge to it if there is one (children reaped
# included, so backends and bridge connections that ended still count).
db_cpu_ms() {
    local t=0 p f
    for p in $(pgrep -x postgres) $(pgrep -x socat); do
        f=$(cut -d' ' -f14-17 "/proc/$p/stat" 2>/dev/null) || continue
        for v in $f; do t=$((t + v)); done
    done
    echo $((t * 1000 / $(getconf CLK_TCK)))
}
# CPU ticks of every thread in the server namespace, as "name ticks"
# lines (a thread's name with its digits taken out: tokio's workers,
# sqlx's connection threads, the blocking pool; dnsmasq and nginx).
server_threads() {
    local p t
    for p in $(ip netns pids "$SNS"); do
        for t in /proc/$p/task/*; do
            awk '{sub(/^[0-9]+ \(/, ""); sub(/\) .*/, "", $0); print}' "$t/stat" 2>/dev/null \
                | tr -d '0-9' | tr ' ' '_' | tr '\n' ' '
            cut -d' ' -f14,15 "$t/stat" 2>/dev/null | awk '{printf "%d ", $1 + $2}'
            awk '/ctxt_switches/ {n += $2} END {print n + 0}' "$t/status" 2>/dev/null
        done
    done | awk '{ticks[$1] += $2; switches[$1] += $3} END {for (n in ticks) print n, ticks[n], switches[n]}'
}
# Memory (KiB) of every process in the server namespace, summed: $1 is
# VmRSS (resident now) or VmHWM (the peak).
server_mem_kib() {
    local t=0 p v
    for p in $(ip netns pids "$SNS"); do
        v=$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

# storm LABEL: the simulator against whatever serves in the server namespace.
storm() {
    local label=$1 cpu0 cpu1
    wait_quiet "storm $label"
    cpu0=$(server_cpu_ms)
    [ "${THREADS:-0}" = 1 ] && server_threads > "$OUT/threads0-$label.txt"
    local db0
    db0=$(db_cpu_ms)
    local perf_pid=""
    if [ "${PERF:-0}" = 1 ]; then
        perf record -q -F 499 ${PERF_ARGS:-} -o "$OUT/perf-$label.data" \
            -p "$(ip netns pids "$SNS" | paste -sd,)" 2>"$OUT/perf-$label.log" &
        perf_pid=$!
    fi
    local stat_pid=""
    if [ "${PERF_STAT:-0}" = 1 ]; then
        perf stat -e task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter \
            -p "$(ip netns pids "$SNS" | paste -sd,)" -o "$OUT/perf-stat-$label.txt" &
        stat_pid=$!
    fi
    timeout $((DEADLINE + ${OVER%.*} + 120)) ip netns exec "$CNS" "$STORM" run \
        --machines "$MACHINES" --over "$OVER" --dhcp "$DHCP_PATHS" \
        --relay-agent "$CLI" --dhcp-server "$SRV" --broadcast-iface eth0 \
        --sources "10.88.0.10-$LAST_SOURCE" --deadline "$DEADLINE" --label "$label" \
        --report "$OUT/storm-$label.json" --leases "$OUT/leases-$label.txt" \
        | tee "$OUT/storm-$label.txt" >&2
    cpu1=$(server_cpu_ms)
    if [ "${THREADS:-0}" = 1 ]; then
        # Threads that ended during the storm are not counted.
        server_threads | awk -v n="$MACHINES" -v hz="$(getconf CLK_TCK)" \
            'NR == FNR {before[$1] = $2; sw[$1] = $3; next}
             {d = $2 - before[$1]; s = $3 - sw[$1]; if (d > 0) printf "server threads %s: %d ms (%.2f ms per machine), %d switches (%.1f per machine)\n", $1, d * 1000 / hz, d * 1000 / hz / n, s, s / n}' \
            "$OUT/threads0-$label.txt" - | sort | tee -a "$OUT/storm-$label.txt" >&2
    fi
    if [ "$label" = bootloader ]; then
        # Where the daemon's time went (store operations, lease groups,
        # requests dropped for overload), for the notes.
        sx curl -sf "http://$SRV:$HTTP_PORT/metrics" > "$OUT/metrics-$label.txt" || true
    fi
    if [ -n "$stat_pid" ]; then
        kill -INT "$stat_pid"; wait "$stat_pid" || true
        grep -E 'task-clock|context-switches|cpu-migrations|sys_enter' "$OUT/perf-stat-$label.txt" \
            | awk -v n="$MACHINES" '{gsub(",", "", $1); printf "server %s: %s (%.1f per machine)\n", $2, $1, $1 / n}' \
            | tee -a "$OUT/storm-$label.txt" >&2
    fi
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid"; wait "$perf_pid" || true
        perf report -i "$OUT/perf-$label.data" --no-children --sort dso,sym --stdio 2>/dev/null \
            | grep -v '^#' | grep . | head -60 > "$OUT/perf-$label.txt" || true
    fi
    {
        echo "server CPU: $((cpu1 - cpu0)) ms for $MACHINES machines ($(( (cpu1 - cpu0) * 1000 / MACHINES )) us per machine)"
        echo "server peak RSS: $(server_mem_kib VmHWM) KiB"
        if [ "$BENCH_DB" = postgres ] && [ "$label" = bootloader ]; then
            local db1
            db1=$(db_cpu_ms)
            echo "database CPU (PostgreSQL, and socat if it bridges): $((db1 - db0)) ms ($(( (db1 - db0) * 1000 / MACHINES )) us per machine)"
        fi
    } | tee -a "$OUT/storm-$label.txt" >&2
}

bl_config() {
    local dbsec=""
    if [ "$BENCH_DB" = postgres ]; then
        local db="blstorm_$$"
        psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null
        psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" >/dev/null
        echo "$db" >> "$WORK/pg/databases"
        dbsec=$(printf '[database]\nurl = "postgres://postgres@localhost/%s?host=%s"\n' "$db" "$PG_HOST")
    fi
    cat > "$BL_DIR/cfg.toml" <<EOF
[server]
url = "http://$SRV:$HTTP_PORT"
data_dir = "$BL_DIR/data"

$dbsec

[http]
listen = "$SRV:$HTTP_PORT"
static_dir = "$WWW/static"

[tftp]
enable = true
listen = "$SRV:69"
root = "$TROOT"

[dhcp]
mode = "authoritative"
interfaces = ["br0"]
lease_time = 3600

# A machine's traffic comes from one of the SOURCES client addresses.
[limits]
tftp_transfers_per_source = 65536
http_connections_per_source = 65536
EOF
}
bl_serve() {
    # shellcheck disable=SC2086
    start_bg "$BL_DIR/daemon.$1.log" env ${BL_RUST_LOG:+RUST_LOG=$BL_RUST_LOG} ${BL_ENV:-} \
        ip netns exec "$SNS" "$BIN" --config "$BL_DIR/cfg.toml" serve
    local t0=$SECONDS
    for _ in $(seq 300); do
        if sx curl -sf -o /dev/null "http://$SRV:$HTTP_PORT/healthz"; then
            echo "bootloader ($1) answered /healthz $((SECONDS - t0)) s after it started" >&2
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "bootloader exited: $(tail -20 "$BL_DIR/daemon.$1.log")"
        sleep 0.2
    done
    die "bootloader did not answer /healthz"
}

storm_bootloader() {
    BL_DIR="$WORK/bootloader"
    mkdir -p "$BL_DIR/data"
    bl_config
    local token
    token=$("$BIN" --config "$BL_DIR/cfg.toml" user add storm --staff 2>>"$BL_DIR/cli.log" | tail -n1) || true
    [ -n "$token" ] || die "bootloader user add failed: $(cat "$BL_DIR/cli.log")"
    bl_serve first
    log "bootloader: registering $MACHINES servers and starting their deployments"
    timeout 1800 ip netns exec "$CNS" "$STORM" prepare --api "http://$SRV:$HTTP_PORT" --token "$token" \
        --machines "$MACHINES" --cidr 10.88.0.0/16 --gateway "$SRV" --pool 10.88.64.1-10.88.127.254 \
        --concurrency "$POSTS" \
        | tee "$OUT/prepare-bootloader.txt" >&2
    wait_quiet "bootloader after prepare"
    echo "server RSS with $MACHINES active deployments, idle: $(server_mem_kib VmRSS) KiB" \
        | tee -a "$OUT/prepare-bootloader.txt" >&2
    log "bootloader: storm of $MACHINES machines over $OVER s"
    storm bootloader
    if [ "$BENCH_DB" = sqlite ]; then
        # What a restart reads before it serves.
        echo "SQLite WAL after the storm: $(( $(stat -c %s "$BL_DIR/data/bootloader.sqlite3-wal" 2>/dev/null || echo 0) / 1048576 )) MiB" \
            | tee -a "$OUT/storm-bootloader.txt" >&2
    fi
    # Durable: what the store holds after a SIGKILL.
    kill -KILL "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    bl_serve after-kill
    timeout 600 ip netns exec "$CNS" "$STORM" check --api "http://$SRV:$HTTP_PORT" --token "$token" \
        --machines "$MACHINES" --leases "$OUT/leases-bootloader.txt" 2>&1 \
        | tee "$OUT/check-bootloader.txt" >&2 || true
    stop_server
}

storm_classic() {
    local d="$WORK/classic"
    mkdir -p "$d"
    "$STORM" classic --dir "$WWW" --machines "$MACHINES" --http "http://$SRV:$NGINX_PORT"
    nginx_conf "$d" "$WWW" "$NGINX_PORT" 'location /_callback/ { return 200 "ok\n"; }'
    # DHCP and TFTP from dnsmasq: the same pool, the NBP for the PXE ROM,
    # the script URL for iPXE; leases in a file, rewritten after changes;
    # --tftp-max raised from 50 as bootloader's per-source limit is.
    start_bg "$d/dnsmasq.log" ip netns exec "$SNS" dnsmasq --no-daemon --conf-file=/dev/null \
        --port=0 --interface=br0 --bind-interfaces -u root \
        --dhcp-range=10.88.64.1,10.88.127.254,255.255.0.0,1h --dhcp-lease-max=200000 \
        --dhcp-authoritative --no-ping --quiet-dhcp --quiet-tftp --dhcp-leasefile="$d/leases" \
        --dhcp-userclass=set:ipxe,iPXE \
        --dhcp-boot=tag:!ipxe,undionly.kpxe,,"$SRV" \
        --dhcp-boot=tag:ipxe,"http://$SRV:$NGINX_PORT/boot.ipxe" \
        --enable-tftp --tftp-root="$TROOT" --tftp-max=100000 \
        --pid-file="$d/dnsmasq.pid"
    wait_udp 67 || die "dnsmasq did not start: $(cat "$d/dnsmasq.log")"
    ip netns exec "$SNS" nginx -p "$d" -c "$d/nginx.conf" > "$d/nginx.log" 2>&1 &
    PIDS+=($!)
    wait_tcp "$NGINX_PORT" || die "nginx did not start: $(cat "$d/error.log" "$d/nginx.log")"
    log "classic: storm of $MACHINES machines over $OVER s"
    storm classic
    echo "dnsmasq lease file: $(sort -u -k3,3 "$d/leases" | wc -l) leases; acknowledged: $(wc -l < "$OUT/leases-classic.txt")" \
        | tee "$OUT/check-classic.txt" >&2
    for p in $(ip netns pids "$SNS"); do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    SERVER_PID=""
}

{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r); cores: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "bootloader: $("$BIN" --version 2>/dev/null || echo '?') (built $BIN_BUILT, work tree at git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')); store: $BENCH_DB"
    echo "dnsmasq: $(dnsmasq --version | head -1 | awk '{print $3}'); nginx: $(nginx -v 2>&1 | cut -d/ -f2); iPXE NBP: $(stat -c %s "$TROOT/undionly.kpxe") bytes"
    echo "params: MACHINES=$MACHINES OVER=$OVER DHCP_PATHS=$DHCP_PATHS SOURCES=$SOURCES KERNEL_KB=$KERNEL_KB INITRD_KB=$INITRD_KB POSTS=$POSTS"
} | tee "$OUT/env.txt" >&2

for peer in "${PEERS[@]}"; do
    case $peer in
    bootloader) storm_bootloader ;;
    classic) storm_classic ;;
    *) die "unknown peer $peer (bootloader, classic)" ;;
    esac
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/env.txt" >&2
