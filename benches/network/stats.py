#!/usr/bin/env python3
"""Parses perfdhcp and wrk reports and prints the benchmark table.

  stats.py perfdhcp REPORT PERIOD   -> "key value" lines
  stats.py wrk REPORT               -> "key value" lines
  stats.py median V...              -> the median (FAIL if any is FAIL)
  stats.py summary RESULTS.tsv      -> the table (medians of the runs, and
                                       per-run ratios against the goals)
"""

import re
import statistics
import sys
from collections import defaultdict


def pct(values, p):
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def perfdhcp(path, period):
    text = open(path, errors="replace").read()
    out = {}
    section = None
    delays = defaultdict(list)
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"\*+\s*(?:Statistics for|Timestamps for packets):\s*(\S+?)\*+$", line)
        if m:
            section = m.group(1)
            continue
        if line.startswith("***"):
            section = None
            continue
        m = re.match(r"sent / received:\s*([\d.]+)\s*/\s*([\d.]+)", line)
        if m and section:
            delays[section].append((float(m.group(2)) - float(m.group(1))) * 1000.0)
            continue
        if section and ":" in line:
            k, v = line.split(":", 1)
            k = k.strip().replace(" ", "_")
            v = v.strip().split()[0] if v.strip() else ""
            try:
                out[f"{section}/{k}"] = float(v)
            except ValueError:
                pass
    acks = out.get("REQUEST-ACK/received_packets", 0.0)
    offers = out.get("DISCOVER-OFFER/received_packets", 0.0)
    disc = out.get("DISCOVER-OFFER/sent_packets", 0.0)
    print(f"dora_per_s {acks / float(period):.1f}")
    print(f"discovers_sent {disc:.0f}")
    print(f"offers {offers:.0f}")
    print(f"acks {acks:.0f}")
    print(f"do_drop_pct {100.0 * (disc - offers) / disc if disc else 100.0:.2f}")
    for leg, key in (("DISCOVER-OFFER", "do"), ("REQUEST-ACK", "ra")):
        d = delays.get(leg, [])
        print(f"{key}_p50_ms {pct(d, 50):.3f}")
        print(f"{key}_p99_ms {pct(d, 99):.3f}")


def wrk(path):
    text = open(path, errors="replace").read()
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    print(f"rps {float(m.group(1)) if m else 0.0:.1f}")
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    for p in ("50", "99"):
        m = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s|m)\b", text, re.M)
        print(f"p{p}_ms {float(m.group(1)) * unit[m.group(2)] if m else float('nan'):.3f}")
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    print(f"non2xx {int(m.group(1)) if m else 0}")
    m = re.search(r"Socket errors:.*", text)
    errs = sum(int(x) for x in re.findall(r"\d+", m.group(0))) if m else 0
    print(f"socket_errors {errs}")


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def median(values):
    vals = [num(v) for v in values]
    if not vals or any(v is None for v in vals):
        return None
    return statistics.median(vals)


# (section, metric, label, unit, transform, higher is better)
ROWS = [
    ("dhcp", "peak_dora_per_s", "DHCP peak DORA/s over the rate sweep", "DORA/s", None, True),
    ("dhcp", "peak_rate", "  offered rate of that step", "/s", None, True),
    ("dhcp", "peak_do_p99_ms", "  DISCOVER->OFFER p99 at that step", "ms", None, False),
    ("dhcp", "peak_ra_p99_ms", "  REQUEST->ACK p99 at that step", "ms", None, False),
    ("dhcp", "RATES", None, None, None, True),
    ("dhcp", "lat_dora_per_s", "DHCP DORA/s at fixed light rate", "DORA/s", None, True),
    ("dhcp", "lat_do_drop_pct", "  DISCOVERs unanswered", "%", None, False),
    ("dhcp", "lat_do_p50_ms", "  DISCOVER->OFFER p50", "ms", None, False),
    ("dhcp", "lat_do_p99_ms", "  DISCOVER->OFFER p99", "ms", None, False),
    ("dhcp", "lat_ra_p50_ms", "  REQUEST->ACK p50", "ms", None, False),
    ("dhcp", "lat_ra_p99_ms", "  REQUEST->ACK p99", "ms", None, False),
    ("dhcp", "lat_acks", "  ACKs received", "", None, True),
    ("dhcp", "lat_server_us_per_dora", "  server CPU per DORA", "us", None, False),
    ("dhcp", "lat_lease_rows", "  leases on disk afterwards", "", None, True),
    ("tftp", "big_lockstep_s", "TFTP 64 MiB, blksize 1468", "MB/s", "mbps", True),
    ("tftp", "WINDOWS", None, None, None, True),
    ("tftp", "lockstep_cpu_ms", "  server CPU's busy time meanwhile", "ms", None, False),
    ("tftp", "burst200_s", "TFTP 200 x 32 KiB at once", "fetch/s", "fetches", True),
    ("tftp", "burst_cpu_us", "  server CPU's busy time per fetch", "us", None, False),
    ("http", "rps", "HTTP /ipxe/<mac> (nginx: static copy)", "req/s", None, True),
    ("http", "p50_ms", "  latency p50", "ms", None, False),
    ("http", "p99_ms", "  latency p99", "ms", None, False),
    ("http", "non2xx", "  non-2xx responses", "", None, False),
    ("http", "rps_unknown", "HTTP /ipxe/<unknown mac> (nginx: static copy)", "req/s", None, True),
    ("http", "p50_ms_unknown", "  latency p50", "ms", None, False),
    ("http", "p99_ms_unknown", "  latency p99", "ms", None, False),
    ("http", "non2xx_unknown", "  non-2xx responses", "", None, False),
]
PEERS = {
    "dhcp": ["bootloader", "kea", "dnsmasq"],
    "tftp": ["bootloader", "tftpd-hpa", "dnsmasq"],
    "http": ["bootloader", "nginx"],
}


def transform(kind, v):
    if v is None:
        return None
    if kind == "mbps":
        return 64 * 1024 * 1024 / 1e6 / v if v > 0 else None
    if kind == "fetches":
        return 200 / v if v > 0 else None
    return v


def summary(path):
    data = defaultdict(dict)  # (section, metric, peer) -> {run: value}
    rates = []
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        sec, metric, peer, run, value = parts
        data[(sec, metric, peer)][run] = value
    # DHCP sweep: the step with the most completed DORA/s, per peer and run.
    rates = sorted({int(m.split("_")[0][1:]) for (sec, m, p) in data
                    if sec == "dhcp" and re.match(r"r\d+_dora_per_s$", m)})
    for peer in PEERS["dhcp"]:
        runs = {r for rate in rates for r in data.get(("dhcp", f"r{rate}_dora_per_s", peer), {})}
        for run in runs:
            best = None
            for rate in rates:
                v = num(data.get(("dhcp", f"r{rate}_dora_per_s", peer), {}).get(run, "x"))
                if v is not None and (best is None or v > best[0]):
                    best = (v, rate)
            if best is None:
                continue
            data[("dhcp", "peak_dora_per_s", peer)][run] = str(best[0])
            data[("dhcp", "peak_rate", peer)][run] = str(best[1])
            for k in ("do_p99_ms", "ra_p99_ms"):
                data[("dhcp", f"peak_{k}", peer)][run] = data[("dhcp", f"r{best[1]}_{k}", peer)].get(run, "x")
    # Older result files called the windowsize-16 run big_window_s.
    for (sec, m, p) in list(data):
        if sec == "tftp" and m == "big_window_s":
            data[("tftp", "big_w16_s", p)] = data.pop((sec, m, p))
    windows = sorted({int(m[5:-2]) for (sec, m, p) in data
                      if sec == "tftp" and re.match(r"big_w\d+_s$", m)})
    sections = [s for s in ("dhcp", "tftp", "http") if any(k[0] == s for k in data)]

    def fmt(v):
        if v is None:
            return "FAIL"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"

    for sec in sections:
        peers = PEERS[sec]
        print()
        print(f"{'median of runs':50s}" + "".join(f"{p:>13s}" for p in peers))
        rows = []
        for row in ROWS:
            if row[1] == "WINDOWS":
                for w in windows:
                    rows.append(("tftp", f"big_w{w}_s", f"TFTP 64 MiB, blksize 1468, windowsize {w}", "MB/s", "mbps", True))
            elif row[1] == "RATES":
                for rate in rates:
                    rows.append(("dhcp", f"r{rate}_dora_per_s", f"  DORA/s completed at {rate}/s offered", "DORA/s", None, True))
                    rows.append(("dhcp", f"r{rate}_do_drop_pct", "    DISCOVERs unanswered", "%", None, False))
                    rows.append(("dhcp", f"r{rate}_server_us_per_dora", "    server CPU per completed DORA", "us", None, False))
            else:
                rows.append(row)
        for s, metric, label, unit, kind, _ in rows:
            if s != sec or not any((sec, metric, p) in data for p in peers):
                continue
            cells = []
            for p in peers:
                runs = data.get((sec, metric, p), {})
                vals = [transform(kind, num(v)) for v in runs.values()]
                cells.append(None if not vals or None in vals else statistics.median(vals))
            print(f"{label + (' [' + unit + ']' if unit else ''):50s}" + "".join(f"{fmt(c):>13s}" for c in cells))

    # Goals: ratios taken within each run, then the median of those.
    def per_run(sec, metric, kind, num_peer, den):
        a = data.get((sec, metric, num_peer), {})
        out = []
        for run, v in sorted(a.items()):
            x = transform(kind, num(v))
            ys = [transform(kind, num(data.get((sec, metric, p), {}).get(run, "x"))) for p in den]
            ys = [y for y in ys if y is not None]
            if x is None or not ys:
                out.append(None)
            else:
                out.append(x / max(ys))
        return out

    goals = []
    if "dhcp" in sections:
        goals.append(("DHCP peak DORA/s vs best of Kea, dnsmasq", 2.0,
                      per_run("dhcp", "peak_dora_per_s", None, "bootloader", ["kea", "dnsmasq"])))
    if "tftp" in sections:
        # dnsmasq has no windowsize: its best of all modes is the reference;
        # bootloader's best windowsize is compared with it, in each run.
        modes = [f"big_w{w}_s" for w in windows]
        runs = sorted({r for m in modes for r in data.get(("tftp", m, "bootloader"), {})})
        r = []
        for run in runs:
            xs = [transform("mbps", num(data.get(("tftp", m, "bootloader"), {}).get(run, "x"))) for m in modes]
            ys = [transform("mbps", num(data.get(("tftp", m, "dnsmasq"), {}).get(run, "x")))
                  for m in modes + ["big_lockstep_s"]]
            xs = [x for x in xs if x is not None]
            ys = [y for y in ys if y is not None]
            r.append(None if not xs or not ys else max(xs) / max(ys))
        goals.append(("TFTP 64 MiB windowed vs dnsmasq (best each)", 5.0, r))
        r = []
        for run in runs:
            x = transform("fetches", num(data.get(("tftp", "burst200_s", "bootloader"), {}).get(run, "x")))
            y = transform("fetches", num(data.get(("tftp", "burst200_s", "dnsmasq"), {}).get(run, "x")))
            r.append(None if x is None or y is None else x / y)
        goals.append(("TFTP 200 x 32 KiB vs dnsmasq", 1.0, r))
        goals.append(("TFTP 64 MiB lock-step vs best of the others", 1.0,
                      per_run("tftp", "big_lockstep_s", "mbps", "bootloader", ["tftpd-hpa", "dnsmasq"])))
    if "http" in sections:
        goals.append(("HTTP /ipxe/<mac> req/s vs nginx static", 1.0,
                      per_run("http", "rps", None, "bootloader", ["nginx"])))
        if any(k[:2] == ("http", "rps_unknown") for k in data):
            goals.append(("HTTP /ipxe/<unknown mac> req/s vs nginx static", 1.0,
                          per_run("http", "rps_unknown", None, "bootloader", ["nginx"])))
    if goals:
        print()
        print(f"{'goal':50s}{'per-run ratios':>24s}{'median':>9s}{'goal':>7s}  verdict")
        for label, goal, ratios in goals:
            ok = [r for r in ratios if r is not None]
            med = statistics.median(ok) if ok and len(ok) == len(ratios) else None
            rs = " ".join("FAIL" if r is None else f"{r:.2f}" for r in ratios)
            if goal is None:
                verdict, g = "-", "-"
            else:
                verdict = "n/a" if med is None else ("met" if med >= goal else "NOT met")
                g = f"{goal:.1f}x"
            print(f"{label:50s}{rs:>24s}{fmt(med) if med is not None else 'n/a':>9s}{g:>7s}  {verdict}")


def main():
    cmd = sys.argv[1]
    if cmd == "perfdhcp":
        perfdhcp(sys.argv[2], sys.argv[3])
    elif cmd == "wrk":
        wrk(sys.argv[2])
    elif cmd == "median":
        m = median(sys.argv[2:])
        print("FAIL" if m is None else f"{m:.4f}")
    elif cmd == "summary":
        summary(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
