#!/usr/bin/python3
"""Writes docs/RELIABILITY.md from build/chaos/results.jsonl, the ledger
that tests/e2e/test_chaos.py appends one line per fault case to."""

import datetime
import json
import sys

COLS = [("faults", "faults injected"), ("requests", "requests served"),
        ("created", "creates 201"), ("create_errors", "creates refused (JSON 5xx)"),
        ("sessions_lost", "sessions lost"), ("orphans", "orphans"),
        ("bytes_verified", "MiB verified"), ("corrupted", "corrupted blocks"),
        ("tunnel_errors", "tunnels broken"), ("connect_failures", "CONNECTs failed"),
        ("connect_retries", "CONNECTs retried")]


def main(results, command):
    rows = [json.loads(line) for line in open(results) if line.strip()]
    out = ["# Reliability", "",
           "Faults injected into the real stack (`make run`'s supervisor, real",
           "redis-server, pico-backend, nginx with the module and runc sandboxes)",
           "while a burst of concurrent creates runs and live SSH tunnels move",
           "checksummed data (each block's SHA-256 is computed in the sandbox and",
           "compared). The cases are tests/e2e/test_chaos.py; their core runs in",
           "`make test` at scale 1.", "",
           "Produced by `%s` on %s." % (command, datetime.date.today().isoformat()), "",
           "| fault | scale | " + " | ".join(c[1] for c in COLS) + " |",
           "|---|---|" + "---|" * len(COLS)]
    total = {c[0]: 0 for c in COLS}
    for r in rows:
        cells = []
        for key, _ in COLS:
            total[key] += r.get(key, 0)
            v = r.get(key, 0)
            cells.append("%.1f" % (v / 2 ** 20) if key == "bytes_verified" else str(v))
        out.append("| %s | %s | %s |" % (r["fault"], r.get("scale", 1), " | ".join(cells)))
    out.append("| **all** | | " + " | ".join(
        "%.1f" % (total[k] / 2 ** 20) if k == "bytes_verified" else str(total[k])
        for k, _ in COLS) + " |")
    out += ["", "\"tunnels broken\" counts only tunnels the fault was not aimed at; the",
            "tunnels held by a killed nginx worker end with it, by design, and are",
            "not counted. \"orphans\" is what stays after the stack settles: a",
            "container, session folder, cgroup, loop device or mount without a",
            "record, or a running record without a sandbox. \"CONNECTs",
            "retried\": a new session's first tunnel answered 503 (\"Session store",
            "unavailable\") and was tried again, which happens right after a Redis",
            "restart while a worker has not reconnected yet."]
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "make chaos")
