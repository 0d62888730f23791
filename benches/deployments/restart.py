"""A restart with many deployments under way, seen by a DHCP client.

Starts BIN on SQLite in DIR (HTTP on 127.0.0.1:PORT, DHCP on
127.0.0.1:PORT+1, spoken to as a relay would: giaddr 127.0.0.1 and option
118 selecting 10.0.0.0/16), registers N servers and starts a deployment
of each that waits for a callback (benches/deployments/create.py), reads
the daemon's RSS and its CPU over 10 s at rest, then stops it (SIGTERM)
and starts it again while one registered machine sends a relayed
DHCPDISCOVER every 10 ms. Prints, per second after the new start, the
DISCOVERs answered and their p50/p99/max latency, the time the daemon
took up its deployments, and the RSS after.

Loopback only; every loop is bounded by count and time.

    python3 benches/deployments/restart.py target/release/bootloader /tmp/rs 18480 10000
"""
import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
binary, data, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dhcp_port = port + 1
base = f"http://127.0.0.1:{port}"
PROBE_SECONDS = 20
PROBE_EVERY = 0.010
# The first registered server's NIC (create.py's numbering).
MAC = bytes([0x52, 0x54, 0x01, 0, 0, 0])


def start():
    env = dict(
        os.environ,
        BOOTLOADER_DATA_DIR=data,
        BOOTLOADER_HTTP_LISTEN=f"127.0.0.1:{port}",
        BOOTLOADER_DHCP_MODE="authoritative",
        BOOTLOADER_DHCP_LISTEN="127.0.0.1",
        BOOTLOADER_DHCP_PORT=str(dhcp_port),
        BOOTLOADER_DHCP_PROXY_PORT=str(dhcp_port + 1),
        RUST_LOG="info",
    )
    log = open(os.path.join(data, "daemon.log"), "a")
    return subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log)


def wait_http(deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("the daemon did not answer HTTP")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def discover(xid):
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 1, xid, 0, 0,
        bytes(4), bytes(4), bytes(4), socket.inet_aton("127.0.0.1"),
        MAC + bytes(10), bytes(64), bytes(128),
    )
    options = (
        b"\x63\x82\x53\x63"
        + b"\x35\x01\x01"
        + b"\x76\x04" + socket.inet_aton("10.0.0.1")
        + b"\xff"
    )
    return head + options


def probe():
    """DISCOVERs every 10 ms for PROBE_SECONDS; (sent at, latency or None)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    sent = {}
    answers = {}
    t0 = time.monotonic()
    next_send = t0
    while time.monotonic() - t0 < PROBE_SECONDS + 1:
        now = time.monotonic()
        if now >= next_send and now - t0 < PROBE_SECONDS:
            xid = random.getrandbits(32)
            sent[xid] = now
            try:
                s.sendto(discover(xid), ("127.0.0.1", dhcp_port))
            except OSError:
                pass
            next_send += PROBE_EVERY
        try:
            while True:
                reply = s.recv(4096)
                xid = struct.unpack("!I", reply[4:8])[0]
                if xid in sent and xid not in answers:
                    answers[xid] = time.monotonic() - sent[xid]
        except BlockingIOError:
            pass
        time.sleep(0.001)
    return t0, [(at - t0, answers.get(xid)) for xid, at in sent.items()]


os.makedirs(data, exist_ok=True)
daemon = start()
wait_http()
token = open(os.path.join(data, "admin-token")).read().strip()
subprocess.run([sys.executable, os.path.join(HERE, "create.py"), base, token, str(n)], check=True)
req = urllib.request.Request(
    base + "/api/v1/networks",
    data=json.dumps({"location": "dc1", "cidr": "10.0.0.0/16", "gateway": "10.0.0.1",
                     "pool": {"start": "10.0.1.1", "end": "10.0.200.254"}}).encode(),
    method="POST",
)
req.add_header("Authorization", "Token " + token)
req.add_header("Content-Type", "application/json")
urllib.request.urlopen(req).read()
time.sleep(5)
a = cpu_seconds(daemon.pid)
time.sleep(10)
b = cpu_seconds(daemon.pid)
print(f"at rest with {n} waiting deployments: RSS {rss_mib(daemon.pid):.0f} MiB, CPU {b - a:.2f} s in 10 s")

daemon.send_signal(signal.SIGTERM)
daemon.wait(timeout=60)
with open(os.path.join(data, "daemon.log")) as f:
    mark = len(f.read())
daemon = start()
t0, results = probe()
with open(os.path.join(data, "daemon.log")) as f:
    after = f.read()[mark:]
taken = [l for l in after.splitlines() if "deployments taken up" in l]
print(f"after the restart: {len(taken)} 'taken up' lines: {taken[:1]}")
print("second  sent  answered  p50 ms  p99 ms  max ms")
for sec in range(PROBE_SECONDS):
    row = [lat for at, lat in results if sec <= at < sec + 1]
    got = sorted(l * 1000 for l in row if l is not None)
    if got:
        p50 = got[len(got) // 2]
        p99 = got[min(len(got) - 1, int(len(got) * 0.99))]
        print(f"{sec:6d} {len(row):5d} {len(got):9d} {p50:7.2f} {p99:7.2f} {got[-1]:7.2f}")
    else:
        print(f"{sec:6d} {len(row):5d} {0:9d}       -       -       -")
print(f"RSS after: {rss_mib(daemon.pid):.0f} MiB")
daemon.send_signal(signal.SIGTERM)
daemon.wait(timeout=60)
