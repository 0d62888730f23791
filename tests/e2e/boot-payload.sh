#!/usr/bin/env bash
# Boot the payload from build-payload.sh in QEMU (TCG) with user-mode
# networking and check that it got a DHCP lease from QEMU's built-in server,
# called back /cb/a and /cb/b on a local HTTP server, and powered off.
#
#   tests/e2e/boot-payload.sh [PAYLOAD_DIR] [NIC]
#     PAYLOAD_DIR  default /var/tmp/payload (built/refreshed first)
#     NIC          e1000 (default), e1000e or virtio-net-pci
#
# Traffic stays on this machine: the HTTP server listens on 127.0.0.1 only and
# QEMU's slirp maps the guest's 10.0.2.2 to the host's loopback; slirp's DHCP
# server answers only the guest inside QEMU.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
dir=${1:-/var/tmp/payload}
nic=${2:-e1000}

"$here/build-payload.sh" "$dir"

work=$(mktemp -d /tmp/boot-payload.XXXXXX)
srv_pid=
cleanup() {
    if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Callback receiver on an ephemeral loopback port; one line per request.
python3 -u - "$work/port" "$work/requests" >"$work/server.log" 2>&1 <<'EOF' &
import http.server, sys
port_file, req_file = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(req_file, "a") as f:
            f.write(f"{self.command} {self.path}\n")
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
open(port_file + ".tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
EOF
srv_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
: >"$work/requests"

start=$(date +%s.%N)
rc=0
timeout 180 qemu-system-x86_64 -machine q35 -accel tcg -m 512 -nographic -no-reboot \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
    -append "console=ttyS0 bootloader.callback=http://10.0.2.2:$port/cb/ bootloader.steps=a,b" \
    -netdev user,id=n0 -device "$nic,netdev=n0" \
    </dev/null >"$work/console.log" 2>&1 || rc=$?
end=$(date +%s.%N)

grep '^payload:' "$work/console.log" || true
echo "--- requests:"; cat "$work/requests"
elapsed=$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print(round($end - $start, 1))")
echo "--- qemu exit $rc after ${elapsed}s ($nic)"

fail=0
check() { if grep -q "$2" "$1"; then echo "ok: $3"; else echo "FAIL: $3"; fail=1; fi; }
[ "$rc" = 0 ] && echo "ok: qemu exited by itself" || { echo "FAIL: qemu exit $rc"; fail=1; }
check "$work/console.log" '^payload: dhcp ok 10\.0\.2\.' "DHCP lease from slirp"
check "$work/console.log" '^payload: callback a ok' "callback a"
check "$work/console.log" '^payload: callback b ok' "callback b"
check "$work/requests" '^GET /cb/a$' "server saw GET /cb/a"
check "$work/requests" '^GET /cb/b$' "server saw GET /cb/b"
if [ "$fail" != 0 ]; then
    echo "--- console:"; cat "$work/console.log"
    exit 1
fi
