#!/usr/bin/env python3
"""The web console under a large site's data, on loopback.

    python3 benches/console/bench.py [--bin target/release/bootloader]

Starts `bootloader serve` on 127.0.0.1 with a fresh SQLite data directory,
fills it through the daemon's own API and boot endpoints (10,000 servers by
CSV import, 100,000 boot-timeline events from GET /ipxe/<mac>, 400 active
deployments), then measures:

1. each console page, signed in, one request at a time: client time
   (p50/p99 over REQUESTS requests) and the daemon's own time per request
   (its bootloader_http_request_duration_seconds sum/count for the route);
2. the daemon's CPU (utime+stime from /proc, % of one core) over WINDOW
   seconds: 200 deployments waiting, nobody watching; 200 deployment pages
   following them (server-sent events) with nothing moving; and both again
   while the deployments move (their two callbacks each, spread over the
   window), once without and once with 200 pages following.

Only 127.0.0.1 is used; the daemon and every stream are stopped at the end,
also on failure. Standard library only.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SERVERS = int(os.environ.get("SERVERS", 10_000))
EVENTS = int(os.environ.get("EVENTS", 100_000))
FOLLOWERS = int(os.environ.get("FOLLOWERS", 200))
REQUESTS = int(os.environ.get("REQUESTS", 50))
WINDOW = float(os.environ.get("WINDOW", 30))
PASSWORD = "bench password 1"

PROFILE = """kind: Profile
apiVersion: v1alpha1
name: bench
version: 1.0
timeout: 2h
workflow:
  new: {}
  preparing:
    - action: serve_file
      via: http
      filename: 'ipxe/{{ mac_address }}'
      source:
        type: template
        name: script
    - action: expect_callback
      name: preparing
  installing:
    - action: expect_callback
      name: installing
  configuring: []
  postconfiguring: []
  complete:
    - action: echo
      message: '{{ fqdn }} is done'
templates:
  script:
    type: template
    contents: |
      #!ipxe
      echo calls back at {{ callback_base }}
"""


def mac(i):
    return "52:54:%02x:%02x:%02x:%02x" % (
        (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)


class Client:
    def __init__(self, port, token=None, cookie=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.token, self.cookie = token, cookie

    def call(self, method, path, body=None, ctype="application/json"):
        """One request; a keep-alive connection the daemon closed while
        idle is opened again once."""
        try:
            return self._call(method, path, body, ctype)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.conn.close()
            return self._call(method, path, body, ctype)

    def _call(self, method, path, body, ctype):
        headers = {}
        if self.token:
            headers["Authorization"] = "Token " + self.token
        if self.cookie:
            headers["Cookie"] = self.cookie
        if body is not None:
            headers["Content-Type"] = ctype
            if isinstance(body, str):
                body = body.encode()
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data, r


def close_all(streams):
    """Ends every following page: shut the sockets first, so that the
    readers blocked on them return at once."""
    for conn in streams:
        try:
            if conn.sock:
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        except OSError:
            pass
    streams.clear()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_percent(pid, seconds, during=None):
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    if during:
        during(seconds)
    else:
        time.sleep(seconds)
    t1, c1 = time.monotonic(), cpu_ticks(pid)
    return 100.0 * (c1 - c0) / hz / (t1 - t0)


def route_times(port):
    """The daemon's own request time per route: {route: (count, sum)}."""
    _, body, _ = Client(port).call("GET", "/metrics")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'bootloader_http_request_duration_seconds_(sum|count)\{route="([^"]+)"\} (\S+)', line)
        if m:
            kind, route, value = m.groups()
            c, s = out.get(route, (0.0, 0.0))
            out[route] = (float(value), s) if kind == "count" else (c, float(value))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/bootloader")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="blconsole.")
    port = 18000 + os.getpid() % 1000
    log = open(os.path.join(data, "daemon.log"), "w")
    # All the followers come from 127.0.0.1 here, where a site's would
    # come from many operators' machines: lift the per-address cap (64).
    env = dict(os.environ, BOOTLOADER_LOG_LEVEL="warn",
               BOOTLOADER_LIMITS_HTTP_CONNECTIONS_PER_SOURCE="1000")
    daemon = subprocess.Popen(
        [args.bin, "serve", "--data-dir", data, "--http-listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    streams = []
    try:
        run(args, data, port, daemon, streams)
    finally:
        close_all(streams)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(data, ignore_errors=True)


def run(args, data, port, daemon, streams):
    token_file = os.path.join(data, "admin-token")
    for _ in range(200):
        if os.path.exists(token_file):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    token = open(token_file).read().strip()
    api = Client(port, token)
    subprocess.run([args.bin, "user", "passwd", "admin", "--data-dir", data],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    print(f"# bootloader {subprocess.run([args.bin, '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"# {SERVERS} servers, {EVENTS} timeline events, {FOLLOWERS} followers, {REQUESTS} requests per page")

    t = time.monotonic()
    assert api.call("POST", "/api/v1/locations", json.dumps({"name": "dc1"}))[0] == 201
    assert api.call("POST", "/api/v1/networks", json.dumps({
        "location": "dc1", "cidr": "10.0.0.0/16",
        "pool": {"start": "10.0.1.1", "end": "10.0.250.254"}}))[0] == 201
    for start in range(0, SERVERS, 5000):
        lines = ["fqdn;location;serial;interface;mac"]
        for i in range(start, min(SERVERS, start + 5000)):
            lines.append(f"node{i:05d}.dc1.example.com;dc1;SN{i:06d};eth0;{mac(i)}")
        s, body, _ = api.call("POST", "/api/v1/servers/import?location=dc1",
                              "\n".join(lines) + "\n", "text/csv")
        assert s in (200, 201), body[:500]
    print(f"# seeded {SERVERS} servers in {time.monotonic() - t:.1f} s")

    t = time.monotonic()
    per_thread = EVENTS // 4

    def boot(offset):
        c = Client(port)
        for k in range(per_thread):
            i = (offset * per_thread + k) % SERVERS
            c.call("GET", f"/ipxe/{mac(i)}")
    threads = [threading.Thread(target=boot, args=(n,)) for n in range(4)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    time.sleep(3)  # the timeline writes in batches
    print(f"# {EVENTS} boot requests in {time.monotonic() - t:.1f} s")

    s, body, _ = api.call("POST", "/api/v1/profiles", PROFILE, "application/yaml")
    assert s == 201, body
    profile = json.loads(body)["id"]
    t = time.monotonic()
    deployments = []
    for i in range(2 * FOLLOWERS):
        s, body, _ = api.call("POST", "/api/v1/deployments", json.dumps(
            {"server": f"node{i:05d}.dc1.example.com", "profile": str(profile)}))
        assert s == 201, body
        deployments.append(json.loads(body)["id"])
    print(f"# {len(deployments)} deployments started in {time.monotonic() - t:.1f} s")
    # Each deployment's callback URL, from the script its machine fetches.
    tokens = {}
    c = Client(port)
    for n, d in enumerate(deployments):
        deadline = time.monotonic() + 60
        while True:
            s, body, _ = c.call("GET", f"/ipxe/{mac(n)}")
            m = re.search(rb"/_callback/([0-9a-f]+)/", body)
            if m:
                tokens[d] = m.group(1).decode()
                break
            assert time.monotonic() < deadline, f"deployment {d} never served its script"
            time.sleep(0.1)

    browser = Client(port)
    s, _, r = browser.call("POST", "/ui/sign-in", urllib.parse.urlencode(
        {"name": "admin", "password": PASSWORD, "next": "/ui/"}), "application/x-www-form-urlencoded")
    assert s == 303, s
    cookie = r.getheader("Set-Cookie").split(";")[0]
    browser = Client(port, cookie=cookie)

    pages = [
        ("dashboard", "/ui/", "/ui/"),
        ("servers", "/ui/servers", "/ui/servers"),
        ("servers, search by MAC", f"/ui/servers?q={urllib.parse.quote(mac(SERVERS // 2))}", "/ui/servers"),
        ("servers, last page", f"/ui/servers?offset={SERVERS - 50}", "/ui/servers"),
        ("server with events", "/ui/servers/node00007.dc1.example.com", "/ui/servers/{fqdn}"),
        ("deployments", "/ui/deployments", "/ui/deployments"),
        ("deployment", f"/ui/deployments/{deployments[0]}", "/ui/deployments/{id}"),
        ("profiles", "/ui/profiles", "/ui/profiles"),
        ("networks", "/ui/networks", "/ui/networks"),
    ]
    print("\n| page | client p50 ms | client p99 ms | daemon mean ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, path, route in pages:
        before = route_times(port).get(route, (0.0, 0.0))
        times = []
        for _ in range(REQUESTS):
            t0 = time.perf_counter()
            s, body, _ = browser.call("GET", path)
            times.append((time.perf_counter() - t0) * 1000)
            assert s == 200, (path, s, body[:300])
        after = route_times(port).get(route, (0.0, 0.0))
        n = after[0] - before[0]
        mean = (after[1] - before[1]) / n * 1000 if n else float("nan")
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"| {name} | {statistics.median(times):.1f} | {p99:.1f} | {mean:.1f} |")

    # CPU: waiting deployments, pages following them, deployments moving.
    pid = daemon.pid
    watched, unwatched = deployments[:FOLLOWERS], deployments[FOLLOWERS:]

    def follow(ids):
        opened = []
        for d in ids:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            conn.request("GET", f"/ui/deployments/{d}/live", headers={"Cookie": cookie})
            r = conn.getresponse()
            assert r.status == 200
            opened.append(conn)
            th = threading.Thread(target=drain, args=(r,), daemon=True)
            th.start()
        return opened

    completed = []

    def drain(r):
        seen = b""
        try:
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                seen = (seen + chunk)[-4096:]
                if b'"state":"complete"' in seen:
                    completed.append(1)
                    seen = b""
        except Exception:
            pass

    def move(ids):
        def go(seconds):
            c = Client(port)
            steps = [(d, name) for name in ("preparing", "installing") for d in ids]
            gap = seconds / max(1, len(steps))
            t0 = time.monotonic()
            for k, (d, name) in enumerate(steps):
                wait = t0 + k * gap - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                s, body, _ = c.call("POST", f"/_callback/{tokens[d]}/{name}", "{}")
                assert s in (200, 201, 202, 204), (s, body)
            rest = t0 + seconds - time.monotonic()
            if rest > 0:
                time.sleep(rest)
        return go

    print(f"\n| daemon CPU over {WINDOW:.0f} s | % of one core |")
    print("| --- | ---: |")
    time.sleep(2)
    print(f"| {2 * FOLLOWERS} deployments waiting, no page open | {cpu_percent(pid, WINDOW):.2f} |")
    streams.extend(follow(watched))
    time.sleep(3)
    print(f"| {FOLLOWERS} deployment pages following, nothing moving | {cpu_percent(pid, WINDOW):.2f} |")
    close_all(streams)
    time.sleep(3)
    print(f"| {FOLLOWERS} deployments moving ({2 * FOLLOWERS} callbacks), no page open | {cpu_percent(pid, WINDOW, move(unwatched)):.2f} |")
    streams.extend(follow(watched))
    time.sleep(3)
    print(f"| {FOLLOWERS} deployments moving ({2 * FOLLOWERS} callbacks), each followed by its page | {cpu_percent(pid, WINDOW, move(watched)):.2f} |")
    time.sleep(3)
    s, body, _ = Client(port, token).call("GET", f"/api/v1/deployments?state=complete&limit=1")
    print(f"\n# deployments complete: {json.loads(body)['count']} of {2 * FOLLOWERS}; "
          f"pages that saw theirs complete: {len(completed)} of {FOLLOWERS}")


if __name__ == "__main__":
    main()
