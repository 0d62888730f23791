"""Allocations per request from heaptrack's flame-graph stacks.

    python3 allocs.py STACKS REQUESTS [TOP]

STACKS is `heaptrack_print -F` output with `--flamegraph-cost-type
allocations` (one "frame;frame;... count" line per stack). Each stack is
charged to its innermost frame that is not the allocator's, std's, core's
or alloc's, so that the sites read as the code that asked.
"""

import collections
import re
import subprocess
import sys

PLUMBING = re.compile(
    r"(alloc::|core::|std::|std\[|core\[|alloc\[|hashbrown|<alloc|<core|<hashbrown"
    r"|malloc|realloc|calloc|__rust|operator new|tokio::runtime|bytes::|<bytes"
    r"|<T as |<str as|<String|<&|<\[|0x[0-9a-f]+$|\?\?)"
)


def demangled(frames):
    out = subprocess.run(
        ["c++filt"], input="\n".join(frames), capture_output=True, text=True, check=True
    ).stdout.split("\n")
    return dict(zip(frames, out))


def main():
    path, requests = sys.argv[1], float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    stacks = []
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip().rpartition(" ")
        if count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    names = demangled(sorted({f for frames, _ in stacks for f in frames}))
    sites = collections.Counter()
    total = 0
    for frames, count in stacks:
        total += count
        site = "(allocator only)"
        for frame in reversed(frames):
            frame = names.get(frame, frame).strip()
            if frame and not PLUMBING.match(frame):
                site = re.sub(r"::h[0-9a-f]{16}", "", frame)
                break
        sites[site[:130]] += count
    print(f"{total} allocations, {requests:.0f} requests: {total / requests:.1f} per request")
    for site, count in sites.most_common(top):
        print(f"{count / requests:7.2f}  {site}")


if __name__ == "__main__":
    main()
