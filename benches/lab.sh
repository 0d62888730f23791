# Shared by the benchmarks under benches/: the two-namespace lab, the
# clean-up that removes it, peers installed from Debian's packages, and the
# helpers that start, wait for and stop the servers under test. Sourced
# (after OUT is set) by benches/network/run.sh and benches/storm/run.sh.
#
# Network safety (shared/TESTING.md): every server runs inside the
# namespace blb-s-$$ (a bridge br0 at 10.88.0.1/16, no route out); every
# client runs inside blb-c-$$ (veth into that bridge, 10.88.0.9/16). Nothing
# here sends a packet from the root namespace to 10.88.0.0/16. An EXIT trap
# kills every process the benchmark started (by pid, and anything left in
# its namespaces) and deletes the namespaces, also on failure or Ctrl-C.

SNS="blb-s-$$"
CNS="blb-c-$$"
SRV=10.88.0.1
CLI=10.88.0.9
PY="$(command -v python3)"
QUIET_WAIT="${QUIET_WAIT:-600}"
QUIET_BUSY="${QUIET_BUSY:-15}"

PIDS=()
NSS=()
POLICY_CREATED=0

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    sleep 0.5
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    # Anything still inside our own namespaces was started by us.
    for ns in "${NSS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$p" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$POLICY_CREATED" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    if [ -f "${WORK:-/nonexistent}/pg/databases" ]; then
        while read -r db; do
            psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
        done < "$WORK/pg/databases"
    fi
    log "cleaned up (namespaces ${NSS[*]:-none}); raw output in $OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, ports 67/69)"

# install_peers PKG...: installs the Debian packages named (the ones found
# missing), without letting their scripts start any service.
install_peers() {
    local missing="$*"
    [ -z "$missing" ] && return 0
    [ "${NO_INSTALL:-0}" = 1 ] && die "missing: $missing (NO_INSTALL=1)"
    log "installing: $missing"
    # Package scripts must not start Kea, tftpd-hpa or nginx in the root
    # namespace: policy-rc.d 101 forbids it while we install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_CREATED=1
    fi
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    for s in kea-dhcp4-server tftpd-hpa nginx; do
        if command -v service >/dev/null; then service "$s" stop >/dev/null 2>&1 || true; fi
    done
    if [ "$POLICY_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=0; fi
}

# lab_up: the two namespaces, joined by a veth into the server's bridge.
lab_up() {
    ip netns add "$SNS"; NSS+=("$SNS")
    ip netns add "$CNS"; NSS+=("$CNS")
    ip -n "$SNS" link set lo up
    ip -n "$CNS" link set lo up
    ip -n "$SNS" link add br0 type bridge forward_delay 0
    ip -n "$SNS" addr add "$SRV/16" dev br0
    ip -n "$SNS" link set br0 up
    ip -n "$SNS" link add vcli type veth peer name eth0 netns "$CNS"
    ip -n "$SNS" link set vcli master br0 up
    ip -n "$CNS" addr add "$CLI/16" dev eth0
    ip -n "$CNS" link set eth0 up
    # perfdhcp's clients get answers at their own (random) MACs, broadcast;
    # nothing else needs a route: neither namespace has one out.
    sx() { ip netns exec "$SNS" "$@"; }
    cx() { ip netns exec "$CNS" "$@"; }
}
sx() { ip netns exec "$SNS" "$@"; }
cx() { ip netns exec "$CNS" "$@"; }

# private_copy BIN NAME: a copy of a binary under $OUT/bin (a rebuild in the
# work tree during the run changes nothing); prints its path.
private_copy() {
    mkdir -p "$OUT/bin"
    cp "$1" "$OUT/bin/$2"
    echo "$OUT/bin/$2"
}

SEQ=0
SERVER_PID=""

start_bg() { # LOGFILE CMD...  -> SERVER_PID
    local logf=$1; shift
    "$@" >"$logf" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    # Nothing of a previous server may still hold a port.
    for p in $(ip netns pids "$SNS"); do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.3
}
# wait_listen u|t PORT: until something in the server namespace listens
# on PORT (UDP or TCP), for at most 10 s, while the server runs.
wait_listen() {
    for _ in $(seq 100); do
        if sx ss -H"$1"ln "sport = :$2" | grep -q .; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
wait_udp() { wait_listen u "$1"; }
wait_tcp() { wait_listen t "$1"; }
# CPU time (ms) used so far by every process in the server namespace.
server_cpu_ms() {
    local t=0 p f
    for p in $(ip netns pids "$SNS"); do
        f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + ${f% *} + ${f#* }))
    done
    echo $((t * 1000 / $(getconf CLK_TCK)))
}
# Busy share of all CPUs over one second (our servers are stopped when this
# is called, so it is what else runs on the machine).
cpu_busy() {
    local a b
    read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
    sleep 1
    read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
    a=$(( (b1 + b2 + b3 + b6 + b7 + b8) - (a1 + a2 + a3 + a6 + a7 + a8) ))
    b=$(( a + (b4 + b5) - (a4 + a5) ))
    echo $(( b > 0 ? 100 * a / b : 0 ))
}
# On a shared machine: wait (at most QUIET_WAIT seconds) until other work
# leaves the CPUs mostly idle, and note what was seen.
wait_quiet() { # WHAT
    local busy waited=0
    busy=$(cpu_busy)
    while [ "$busy" -gt "$QUIET_BUSY" ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        sleep 4; waited=$((waited + 5))
        busy=$(cpu_busy)
    done
    echo "$1: other CPU use ${busy}% (waited ${waited}s)" >> "$OUT/load.txt"
    [ "$busy" -le "$QUIET_BUSY" ] || log "WARNING: machine busy (${busy}%) for $1; figures are disturbed"
}

# pg_bridge: with BENCH_DB=postgres, PostgreSQL for a daemon inside the
# server namespace; sets PG_HOST, the socket directory the daemon's URL
# names. PostgreSQL listens on the root namespace's loopback, which a
# namespace cannot reach over IP, but a Unix socket is a file: where the
# server's own socket accepts the bench's user (`local ... trust`), the
# daemon connects to it directly, as a daemon on the database's host
# would. Otherwise socat in the root namespace forwards
# $WORK/pg/.s.PGSQL.5432 to 127.0.0.1:5432, and costs a copy of every
# byte both ways (its CPU is counted with the database's); PG_VIA=socat
# takes that way even where the socket would do.
pg_bridge() {
    [ "${BENCH_DB:-sqlite}" = postgres ] || return 0
    mkdir -p "$WORK/pg"
    local dir
    for dir in /run/postgresql /var/run/postgresql /tmp; do
        [ "${PG_VIA:-socket}" = socat ] && break
        if [ -S "$dir/.s.PGSQL.5432" ] \
            && psql -h "$dir" -U postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
            PG_HOST=$dir
            log "PostgreSQL through its own socket in $dir"
            return 0
        fi
    done
    command -v socat >/dev/null || die "BENCH_DB=postgres needs socat (the server's socket did not accept user postgres)"
    socat "UNIX-LISTEN:$WORK/pg/.s.PGSQL.5432,fork,mode=777" TCP:127.0.0.1:5432 \
        >"$WORK/pg/socat.log" 2>&1 &
    PIDS+=($!)
    PG_HOST=$WORK/pg
    log "PostgreSQL through a socat bridge in $PG_HOST"
    sleep 0.5
}

# nginx_conf DIR ROOT PORT [EXTRA]: nginx serving ROOT as static files on
# $SRV:PORT, its pid, logs and temporary files in DIR, EXTRA (more
# `location` blocks) inside the server; as many connections as this shell
# may open files.
nginx_conf() {
    local d=$1 root=$2 port=$3 extra=${4:-} nofile
    nofile=$(ulimit -n)
    cat > "$d/nginx.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile $nofile;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections $((nofile / 2)); }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    default_type text/plain;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    server {
        listen $SRV:$port backlog=4096;
        root $root;
        location / { }
        $extra
    }
}
EOF
}
