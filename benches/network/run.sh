#!/usr/bin/env bash
# Network benchmarks: bootloader against Kea, dnsmasq, tftpd-hpa and nginx
# on the same machine, in network namespaces this script creates and
# removes. See BENCHMARKS.md at the repository root for what is measured,
# why, and the figures.
#
#   sudo benches/network/run.sh [dhcp] [tftp] [http]     (default: all three)
#
# Knobs (environment): RUNS (3), OUT (results directory, default a new
# /tmp/blbench.XXXX), BIN (bootloader binary, default target/release/
# bootloader, built if missing), DHCP_RATES / DHCP_STEP_SECONDS /
# DHCP_CLIENTS (the rate sweep), DHCP_LAT_RATE / DHCP_LAT_SECONDS (latency
# run),
# TFTP_WINDOWS (windowsizes asked for, "16 64"), TFTP_PIN (see bench_tftp),
# TFTP_BURSTS (bursts of 200 fetches per
# run), WRK_SECONDS / WRK_CONNS / WRK_THREADS, BENCH_DB=postgres (run
# bootloader on PostgreSQL through its own socket or a socat bridge, see
# pg_bridge in benches/lab.sh),
# NO_INSTALL=1 (do not apt-get missing peers), DHCP_PEERS / TFTP_PEERS
# (which servers, default all), DHCP_LAT=0 (skip the fixed-rate run),
# QUIET_WAIT / QUIET_BUSY (before each peer, wait up to QUIET_WAIT s, 600,
# for other work on the machine to use at most QUIET_BUSY % CPU, 15),
# BL_RUST_LOG (RUST_LOG for bootloader, e.g. sqlx::query=debug to count
# store statements).
#
# Network safety (shared/TESTING.md): the lab is benches/lab.sh's; servers
# run only inside its server namespace, clients only inside its client
# namespace, every load run is bounded by `timeout` and by its own
# count/duration, and everything is removed on exit, also on failure.

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

RUNS="${RUNS:-3}"
BIN="${BIN:-$REPO/target/release/bootloader}"
DHCP_RATES="${DHCP_RATES:-250 350 500 700 1000 2000 4000 8000 16000}"
DHCP_STEP_SECONDS="${DHCP_STEP_SECONDS:-6}"
DHCP_CLIENTS="${DHCP_CLIENTS:-40000}"
DHCP_LAT_RATE="${DHCP_LAT_RATE:-300}"
DHCP_LAT_SECONDS="${DHCP_LAT_SECONDS:-10}"
TFTP_WINDOWS="${TFTP_WINDOWS:-16 64}"
TFTP_BURSTS="${TFTP_BURSTS:-5}"
TFTP_CONCURRENT=200
WRK_SECONDS="${WRK_SECONDS:-10}"
WRK_CONNS="${WRK_CONNS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
BENCH_DB="${BENCH_DB:-sqlite}"
TFTP_PIN="${TFTP_PIN-0:1}"
SRV_PIN=()
CLI_PIN=()
DHCP_PEERS="${DHCP_PEERS:-bootloader kea dnsmasq}"
TFTP_PEERS="${TFTP_PEERS:-bootloader tftpd-hpa dnsmasq}"
DHCP_LAT="${DHCP_LAT:-1}"

SECTIONS=("$@")
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(dhcp tftp http)
MAC1=52:54:00:00:00:01
# A MAC no server has: the script the unknown-machine policy gives.
MAC_UNKNOWN=52:54:00:00:99:99

OUT="${OUT:-$(mktemp -d /tmp/blbench.XXXX)}"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"

. "$HERE/../lab.sh"

# ---------------------------------------------------------------- install
need_pkgs() {
    local missing=()
    [ -x /usr/sbin/perfdhcp ] || missing+=(kea-admin)
    command -v kea-dhcp4 >/dev/null || missing+=(kea-dhcp4-server)
    command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
    command -v in.tftpd >/dev/null || missing+=(tftpd-hpa)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v atftp >/dev/null || missing+=(atftp)
    command -v curl >/dev/null || missing+=(curl)
    command -v bc >/dev/null || missing+=(bc)
    command -v ss >/dev/null || missing+=(iproute2)
    echo "${missing[@]}"
}
# shellcheck disable=SC2046
install_peers $(need_pkgs)

if [ ! -x "$BIN" ]; then
    log "building bootloader (cargo build --release)"
    (cd "$REPO" && cargo build --release)
fi
BIN_BUILT="$(date -u -r "$BIN" +%FT%TZ)"
BIN="$(private_copy "$BIN" bootloader)"

# ---------------------------------------------------------------- lab
lab_up
WORK="$OUT/work"
mkdir -p "$WORK"

record() { # SECTION METRIC PEER RUN VALUE
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"
}

# ---------------------------------------------------------------- files
TROOT="$WORK/tftp-root"
mkdir -p "$TROOT"
if [ ! -f "$TROOT/big.bin" ]; then
    head -c $((64 * 1024 * 1024)) /dev/urandom > "$TROOT/big.bin"
    head -c $((32 * 1024)) /dev/urandom > "$TROOT/small.bin"
fi
BIG_MD5=$(md5sum < "$TROOT/big.bin" | cut -d' ' -f1)
SMALL_MD5=$(md5sum < "$TROOT/small.bin" | cut -d' ' -f1)

pg_bridge

# ---------------------------------------------------------------- bootloader
BL_TOKEN=""
BL_DIR=""
# bl_start DHCPMODE: a fresh store (new SQLite file, or a new PostgreSQL
# database), the daemon in the server namespace, location + network seeded
# through the REST API from inside the namespace.
bl_start() {
    local mode=$1
    SEQ=$((SEQ + 1))
    BL_DIR="$WORK/bl.$SEQ"
    mkdir -p "$BL_DIR/data" "$BL_DIR/static"
    local dbsec=""
    if [ "$BENCH_DB" = postgres ]; then
        local db="blbench_$$_$SEQ"
        psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" >/dev/null
        echo "$db" >> "$WORK/pg/databases"
        dbsec=$(printf '[database]\nurl = "postgres://postgres@localhost/%s?host=%s"\n' "$db" "$PG_HOST")
    fi
    cat > "$BL_DIR/cfg.toml" <<EOF
[server]
url = "http://$SRV:8080"
data_dir = "$BL_DIR/data"

$dbsec

[http]
listen = "$SRV:8080"
static_dir = "$BL_DIR/static"

[tftp]
enable = true
listen = "$SRV:69"
root = "$TROOT"
max_windowsize = 64

[dhcp]
mode = "$mode"
interfaces = ["br0"]
lease_time = 3600

# All the load comes from one client address; the peers' own caps are
# raised alike (dnsmasq --tftp-max=1000, nginx has none).
[limits]
tftp_transfers_per_source = 1000
http_connections_per_source = 1000
EOF
    BL_TOKEN=$("$BIN" --config "$BL_DIR/cfg.toml" user add bench --staff 2>>"$BL_DIR/cli.log" | tail -n1)
    [ -n "$BL_TOKEN" ] || die "bootloader user add failed: $(cat "$BL_DIR/cli.log")"
    start_bg "$BL_DIR/daemon.log" "${SRV_PIN[@]}" env ${BL_RUST_LOG:+RUST_LOG=$BL_RUST_LOG} \
        ip netns exec "$SNS" "$BIN" --config "$BL_DIR/cfg.toml" serve
    for _ in $(seq 150); do
        if sx curl -sf -o /dev/null "http://$SRV:8080/healthz"; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "bootloader exited: $(tail -20 "$BL_DIR/daemon.log")"
        sleep 0.2
    done
    bl_api POST /locations '{"name":"lab"}' | grep -q '"lab"' || die "location"
    bl_api POST /networks '{"location":"lab","cidr":"10.88.0.0/16","gateway":"10.88.0.1","pool":{"start":"10.88.1.1","end":"10.88.200.254"}}' \
        | grep -q '10.88.0.0/16' || die "network"
}
bl_api() { # METHOD PATH [JSON]
    local args=(-sS -X "$1" -H "Authorization: Token $BL_TOKEN" "http://$SRV:8080/api/v1$2")
    [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    timeout 30 ip netns exec "$SNS" curl "${args[@]}"
}

# ---------------------------------------------------------------- DHCP
dhcp_start() { # PEER
    local d
    SEQ=$((SEQ + 1)); d="$WORK/dhcp.$1.$SEQ"; mkdir -p "$d"; PEER_DIR=$d
    case $1 in
    bootloader)
        bl_start authoritative
        ;;
    kea)
        # Memfile, persist=true: every lease is appended to the CSV file
        # before the reply (written, not fsync'd). Multi-threading on with
        # 2 threads (the machine has 2 cores).
        cat > "$d/kea.json" <<EOF
{"Dhcp4": {
 "interfaces-config": {"interfaces": ["br0"], "dhcp-socket-type": "raw"},
 "lease-database": {"type": "memfile", "persist": true, "name": "$d/leases4.csv", "lfc-interval": 0},
 "valid-lifetime": 3600, "renew-timer": 900, "rebind-timer": 1800,
 "multi-threading": {"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64},
 "subnet4": [{"id": 1, "subnet": "10.88.0.0/16",
   "pools": [{"pool": "10.88.1.1 - 10.88.200.254"}],
   "option-data": [{"name": "routers", "data": "10.88.0.1"}]}],
 "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "$d/kea.log"}], "severity": "WARN"}]
}}
EOF
        start_bg "$d/stdout.log" env KEA_PIDFILE_DIR="$d" KEA_LOCKFILE_DIR="$d" \
            ip netns exec "$SNS" kea-dhcp4 -c "$d/kea.json"
        ;;
    dnsmasq)
        # Lease file rewritten and fsync'd after changes; --no-ping because
        # the other two do not probe addresses either; --quiet-dhcp so that
        # it does not log every packet.
        start_bg "$d/stdout.log" ip netns exec "$SNS" dnsmasq --no-daemon --conf-file=/dev/null \
            --port=0 --interface=br0 --bind-interfaces -u root \
            --dhcp-range=10.88.1.1,10.88.200.254,255.255.0.0,1h --dhcp-lease-max=200000 \
            --dhcp-authoritative --no-ping --quiet-dhcp --dhcp-leasefile="$d/leases" \
            --pid-file="$d/pid"
        ;;
    esac
    wait_udp 67 || die "$1 DHCP did not start ($d)"
}

# perfdhcp in the client namespace: -g single keeps it to one thread so that
# the server under test has the other core; -x t prints every exchange's
# timestamps (for percentiles). Bounded by -p and by timeout.
perfdhcp_run() { # OUTFILE RATE SECONDS
    timeout $(($3 + 30)) ip netns exec "$CNS" perfdhcp -4 -l eth0 -g single -x t \
        -r "$2" -R "$DHCP_CLIENTS" -p "$3" -W 1000000 > "$1" 2>&1 || true
}

# Leases the peer holds on disk now (distinct addresses).
lease_rows() { # PEER
    case $1 in
    bootloader) bl_api GET '/leases?limit=1&offset=0' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])' ;;
    kea) tail -n +2 "$PEER_DIR/leases4.csv" | cut -d, -f1 | sort -u | wc -l ;;
    dnsmasq) sort -u -k3,3 "$PEER_DIR/leases" | wc -l ;;
    esac
}

# The server's CPU per completed exchange of step PREFIX (microseconds):
# a capacity measure that holds where perfdhcp, one thread on the other
# core, is what saturates first.
record_cpu() { # PREFIX PEER RUN CPU_MS
    local acks
    acks=$(awk -F'\t' -v m="$1_acks" -v p="$2" -v r="$3" '$2==m && $3==p && $4==r {print $5}' "$RESULTS")
    [ -n "$acks" ] && [ "$acks" -gt 0 ] 2>/dev/null || return 0
    record dhcp "$1_server_us_per_dora" "$2" "$3" $(($4 * 1000 / acks))
}

# Per peer: a rate sweep (a fresh server for every step; the peak of the
# completed DORA/s is the peer's capacity), then a run at a light fixed
# rate that every peer sustains, for latency percentiles.
bench_dhcp() {
    local run=$1 peer f rate cpu0 cpu1
    for peer in $DHCP_PEERS; do
        wait_quiet "dhcp run $run $peer"
        for rate in $DHCP_RATES; do
            dhcp_start "$peer"
            f="$OUT/dhcp-r$rate-$peer-$run.txt"
            cpu0=$(server_cpu_ms)
            perfdhcp_run "$f" "$rate" "$DHCP_STEP_SECONDS"
            cpu1=$(server_cpu_ms)
            "$PY" "$HERE/stats.py" perfdhcp "$f" "$DHCP_STEP_SECONDS" | while read -r k v; do
                record dhcp "r${rate}_$k" "$peer" "$run" "$v"
            done
            record_cpu "r${rate}" "$peer" "$run" $((cpu1 - cpu0))
            log "dhcp run $run $peer: $rate/s offered -> $(awk -F'\t' -v m="r${rate}_dora_per_s" -v p="$peer" -v r="$run" '$2==m && $3==p && $4==r {print $5}' "$RESULTS") DORA/s"
            stop_server
        done
        [ "$DHCP_LAT" = 1 ] || continue
        dhcp_start "$peer"
        f="$OUT/dhcp-lat-$peer-$run.txt"
        cpu0=$(server_cpu_ms)
        perfdhcp_run "$f" "$DHCP_LAT_RATE" "$DHCP_LAT_SECONDS"
        cpu1=$(server_cpu_ms)
        "$PY" "$HERE/stats.py" perfdhcp "$f" "$DHCP_LAT_SECONDS" | while read -r k v; do
            record dhcp "lat_$k" "$peer" "$run" "$v"
        done
        record_cpu lat "$peer" "$run" $((cpu1 - cpu0))
        record dhcp lat_lease_rows "$peer" "$run" "$(lease_rows "$peer")"
        # Where bootloader's time went (the lease group's store time, the
        # answer's, the queue's wait): sums and counts give the means.
        if [ "$peer" = bootloader ]; then
            sx curl -sf "http://$SRV:8080/metrics" > "$OUT/metrics-lat-bootloader-$run.txt" || true
        fi
        log "dhcp run $run $peer: latency run at $DHCP_LAT_RATE/s done"
        stop_server
    done
}

# ---------------------------------------------------------------- TFTP
tftp_start() { # PEER
    local d
    SEQ=$((SEQ + 1)); d="$WORK/tftp.$1.$SEQ"; mkdir -p "$d"
    case $1 in
    bootloader) bl_start off ;;
    tftpd-hpa)
        # -L: foreground; -s: chroot to the root. No windowsize (RFC 7440)
        # in tftp-hpa 5.2: it leaves the option out of its OACK.
        start_bg "$d/stdout.log" "${SRV_PIN[@]}" ip netns exec "$SNS" in.tftpd -L -s "$TROOT" -a "$SRV:69"
        ;;
    dnsmasq)
        start_bg "$d/stdout.log" "${SRV_PIN[@]}" ip netns exec "$SNS" dnsmasq --no-daemon --conf-file=/dev/null \
            --port=0 --interface=br0 --bind-interfaces -u root --enable-tftp \
            --tftp-root="$TROOT" --tftp-max=1000 --pid-file="$d/pid"
        ;;
    esac
    wait_udp 69 || die "$1 TFTP did not start ($d)"
}

# One 64 MiB download with atftp, timed inside the client namespace;
# prints seconds, or FAIL when the bytes are wrong.
tftp_big() { # OUTNAME [windowsize]
    local dst="$WORK/$1" opts=(--option "blksize 1468")
    [ $# -ge 2 ] && opts+=(--option "windowsize $2")
    rm -f "$dst"
    local t
    t=$(timeout 300 ip netns exec "$CNS" "${CLI_PIN[@]}" bash -c '
        s=$(date +%s%N)
        atftp "${@:3}" -g -r big.bin -l "$2" "$1" >/dev/null 2>&1 || { echo FAIL; exit 0; }
        e=$(date +%s%N)
        echo "scale=4; ($e - $s) / 1000000000" | bc' _ "$SRV" "$dst" "${opts[@]}") || t=FAIL
    if [ "$t" != FAIL ] && [ "$(md5sum < "$dst" | cut -d' ' -f1)" != "$BIG_MD5" ]; then t=FAIL; fi
    rm -f "$dst"
    echo "$t"
}

# 200 fetches of a 32 KiB file at once (curl, one process, 200 parallel
# transfers, blksize 1468); prints the burst's seconds or FAIL.
tftp_burst() {
    local d="$WORK/burst" args=() i
    rm -rf "$d"; mkdir -p "$d"
    for i in $(seq 1 $TFTP_CONCURRENT); do args+=(-o "$d/f$i" "tftp://$SRV/small.bin"); done
    local t
    t=$(timeout 120 ip netns exec "$CNS" "${CLI_PIN[@]}" bash -c '
        s=$(date +%s%N)
        curl -sS -Z --parallel-max 200 --parallel-immediate --tftp-blksize 1468 \
            --max-time 60 "$@" >/dev/null 2>&1 || { echo FAIL; exit 0; }
        e=$(date +%s%N)
        echo "scale=4; ($e - $s) / 1000000000" | bc' _ "${args[@]}") || t=FAIL
    if [ "$t" != FAIL ]; then
        local good
        good=$(cat "$d"/f* 2>/dev/null | wc -c)
        if [ "$(md5sum "$d"/f* | awk -v m="$SMALL_MD5" '$1 == m' | wc -l)" != "$TFTP_CONCURRENT" ]; then
            t=FAIL
            log "burst: wrong or missing files ($good bytes in all)"
        fi
    fi
    rm -rf "$d"
    echo "$t"
}

# Lock-step TFTP over veth is one wake-up of the other side per block. In
# this VM a wake-up across vCPUs costs ~80 us and one on the same vCPU far
# less, so unpinned runs flip between two speeds (~18 and ~110 MB/s for
# dnsmasq) with the scheduler's placement. TFTP_PIN=S:C puts every TFTP
# server on CPU S and the clients on CPU C (default 0:1: a fixed
# cross-CPU round trip, the nearer stand-in for a real network); an empty
# TFTP_PIN leaves placement to the scheduler.
# The busy time, in clock ticks, of the CPU the TFTP servers are pinned
# to (its processes and the kernel's work there: the server side of the
# transfers, whichever server runs); nothing when they are not pinned.
server_cpu_ticks() {
    [ -n "$TFTP_PIN" ] || return 0
    awk -v c="cpu${TFTP_PIN%%:*}" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

bench_tftp() {
    local run=$1 peer t b bursts w
    if [ -n "$TFTP_PIN" ]; then
        SRV_PIN=(taskset -c "${TFTP_PIN%%:*}")
        CLI_PIN=(taskset -c "${TFTP_PIN##*:}")
    fi
    for peer in $TFTP_PEERS; do
        wait_quiet "tftp run $run $peer"
        tftp_start "$peer"
        log "tftp run $run $peer: 64 MiB lockstep"
        c0=$(server_cpu_ticks)
        t=$(tftp_big "big-$peer"); record tftp big_lockstep_s "$peer" "$run" "$t"
        c1=$(server_cpu_ticks)
        [ -n "$c0" ] && record tftp lockstep_cpu_ms "$peer" "$run" "$(( (c1 - c0) * 1000 / $(getconf CLK_TCK) ))"
        log "tftp run $run $peer: 64 MiB lockstep: $t s"
        for w in $TFTP_WINDOWS; do
            t=$(tftp_big "big-$peer" "$w"); record tftp "big_w${w}_s" "$peer" "$run" "$t"
            log "tftp run $run $peer: 64 MiB windowsize $w: $t s"
        done
        bursts=()
        c0=$(server_cpu_ticks)
        for b in $(seq "$TFTP_BURSTS"); do bursts+=("$(tftp_burst)"); done
        c1=$(server_cpu_ticks)
        log "tftp run $run $peer: bursts ${bursts[*]}"
        record tftp burst200_s "$peer" "$run" "$("$PY" "$HERE/stats.py" median "${bursts[@]}")"
        if [ -n "$c0" ]; then
            record tftp burst_cpu_us "$peer" "$run" \
                "$(( (c1 - c0) * 1000000 / $(getconf CLK_TCK) / (TFTP_BURSTS * TFTP_CONCURRENT) ))"
        fi
        stop_server
    done
    SRV_PIN=()
    CLI_PIN=()
}

# ---------------------------------------------------------------- HTTP
NGINX_PORT=8081
# wrk_run LABEL URL PEER SUFFIX: one wrk run, its figures recorded as
# PEER's http metrics with SUFFIX ("" for the known MAC, _unknown).
wrk_run() {
    local label=$1 url=$2 peer=$3 suffix=$4 out="$OUT/http-$1.txt"
    log "http $label: wrk $url"
    timeout $((WRK_SECONDS + 30)) ip netns exec "$CNS" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" \
        -d"${WRK_SECONDS}s" --latency "$url" > "$out" 2>&1 || true
    "$PY" "$HERE/stats.py" wrk "$out" | while read -r k v; do
        record http "$k$suffix" "$peer" "$run" "$v"
    done
}

bench_http() {
    local run=$1 d
    # bootloader: a registered server without a deployment -> local-boot
    # script after two store lookups (served file, boot target); a MAC no
    # server has -> the unknown-machine policy's script.
    wait_quiet "http run $run"
    bl_start off
    bl_api POST /servers "{\"fqdn\":\"n1.lab.example.com\",\"location\":\"lab\",\"interfaces\":[{\"name\":\"eth0\",\"mac\":\"$MAC1\"}]}" \
        | grep -q n1.lab.example.com || die "server registration"
    mkdir -p "$WORK/www/ipxe"
    for m in "$MAC1" "$MAC_UNKNOWN"; do
        cx curl -sf -o "$WORK/www/ipxe/$m" "http://$SRV:8080/ipxe/$m" || die "ipxe script for $m"
        grep -q '^#!ipxe' "$WORK/www/ipxe/$m" || die "not an iPXE script for $m"
    done
    wrk_run "bootloader-$run" "http://$SRV:8080/ipxe/$MAC1" bootloader ""
    wrk_run "bootloader-unknown-$run" "http://$SRV:8080/ipxe/$MAC_UNKNOWN" bootloader _unknown
    stop_server

    # nginx: the same bytes as static files.
    d="$WORK/nginx"; mkdir -p "$d"
    nginx_conf "$d" "$WORK/www" "$NGINX_PORT"
    start_bg "$d/stdout.log" ip netns exec "$SNS" nginx -p "$d" -c "$d/nginx.conf"
    wait_tcp "$NGINX_PORT" || die "nginx did not start: $(cat "$d/error.log" "$d/stdout.log")"
    for m in "$MAC1" "$MAC_UNKNOWN"; do
        cx curl -sf "http://$SRV:$NGINX_PORT/ipxe/$m" | cmp -s - "$WORK/www/ipxe/$m" || die "nginx serves other bytes"
    done
    wrk_run "nginx-$run" "http://$SRV:$NGINX_PORT/ipxe/$MAC1" nginx ""
    wrk_run "nginx-unknown-$run" "http://$SRV:$NGINX_PORT/ipxe/$MAC_UNKNOWN" nginx _unknown
    stop_server
}

# ---------------------------------------------------------------- main
{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r); cores: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "bootloader: $("$BIN" --version 2>/dev/null || echo '?') (built $BIN_BUILT, work tree at git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), sha256 $(sha256sum < "$BIN" | cut -c1-12)); store: $BENCH_DB"
    echo "kea-dhcp4: $(kea-dhcp4 -V | head -1)"
    echo "perfdhcp: $(perfdhcp -v 2>&1 | awk '/VERSION/{print $2}')"
    echo "dnsmasq: $(dnsmasq --version | head -1 | awk '{print $3}')"
    echo "tftpd-hpa: $(dpkg-query -W -f='${Version}' tftpd-hpa 2>/dev/null)"
    echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2)"
    echo "wrk: $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
    echo "atftp: $(dpkg-query -W -f='${Version}' atftp 2>/dev/null); curl: $(curl --version | head -1 | awk '{print $2}')"
    echo "params: RUNS=$RUNS DHCP_RATES=\"$DHCP_RATES\" DHCP_STEP_SECONDS=$DHCP_STEP_SECONDS DHCP_CLIENTS=$DHCP_CLIENTS DHCP_LAT_RATE=$DHCP_LAT_RATE DHCP_LAT_SECONDS=$DHCP_LAT_SECONDS TFTP_WINDOWS=\"$TFTP_WINDOWS\" TFTP_PIN=$TFTP_PIN TFTP_BURSTS=$TFTP_BURSTS WRK=${WRK_THREADS}t/${WRK_CONNS}c/${WRK_SECONDS}s"
} | tee "$OUT/env.txt" >&2

for run in $(seq "$RUNS"); do
    for s in "${SECTIONS[@]}"; do
        echo "run $run $s: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
        case $s in
        dhcp) bench_dhcp "$run" ;;
        tftp) bench_tftp "$run" ;;
        http) bench_http "$run" ;;
        *) die "unknown section $s (dhcp, tftp, http)" ;;
        esac
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/env.txt" >&2

"$PY" "$HERE/stats.py" summary "$RESULTS" | tee "$OUT/summary.txt"
