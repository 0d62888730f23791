"""Starting many deployments, one POST /api/v1/deployments at a time.

Registers N servers (CSV import), uploads a profile whose deployments
wait for a callback (so every one stays active), then creates a
deployment per server and prints the total time and the median and p99
of the POSTs, first tenth against last tenth.

    python3 benches/deployments/create.py http://127.0.0.1:18080 TOKEN 2000
"""
import json
import statistics
import sys
import time
import urllib.request

base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


def call(method, path, body=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + "/api/v1" + path, data=data, method=method)
    req.add_header("Authorization", "Token " + token)
    req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


call("POST", "/locations", {"name": "dc1"})
for first in range(0, n, 1000):
    lines = "fqdn;location;interface;mac\n" + "".join(
        "b%05d.dc1.example.com;dc1;eth0;52:54:01:%02x:%02x:%02x\n"
        % (i, i >> 16 & 255, i >> 8 & 255, i & 255)
        for i in range(first, min(n, first + 1000))
    )
    call("POST", "/servers/import", lines.encode(), "text/csv")
profile = b"""kind: Profile
apiVersion: v1alpha1
name: wait
version: '1'
workflow:
  new:
    - action: expect_callback
      name: never
"""
call("POST", "/profiles", profile, "application/yaml")
times = []
start = time.monotonic()
for i in range(n):
    t = time.monotonic()
    call("POST", "/deployments", {"server": "b%05d.dc1.example.com" % i, "profile": "wait==1"})
    times.append(time.monotonic() - t)
total = time.monotonic() - start
tenth = max(1, n // 10)
ms = lambda xs: "median %.1f ms, p99 %.1f ms" % (
    statistics.median(xs) * 1000,
    sorted(xs)[int(len(xs) * 0.99) - 1] * 1000,
)
print("%d deployments in %.1f s; first tenth %s; last tenth %s"
      % (n, total, ms(times[:tenth]), ms(times[-tenth:])))
