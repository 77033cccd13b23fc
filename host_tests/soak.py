"""`make soak`: the fault-injection soak (test_fault_injection.py) in SHARDS parallel processes,
each with its own seed, dev CSMS, proxy, ports and DATA dir, and one combined report.

  python host_tests/soak.py --sessions 900 --shards 6 [--seed S]

--sessions is the total; shard i runs its share with seed S+i (S random unless given). Each
shard's log is build/soak/shard-<i>.log, its figures build/soak/shard-<i>.json. The report
lists every shard's seed and the command that replays it alone; the exit code is 1 when any
shard found a problem (or failed to report).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def add(total, part):
    for k, v in (part or {}).items():
        total[k] += v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=900)
    ap.add_argument("--shards", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "build" / "soak"))
    a = ap.parse_args()
    base = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 30)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    shards = max(1, min(a.shards, a.sessions))
    per = [a.sessions // shards + (i < a.sessions % shards) for i in range(shards)]
    t0 = time.time()
    procs = []
    print("soak: %d sessions in %d shards, seeds %d..%d" % (a.sessions, shards, base, base + shards - 1), flush=True)
    # the update files once, before the shards race for them
    sys.path.insert(0, str(ROOT / "host_tests"))
    import soak_ops
    soak_ops.build_bundles(out)
    for i in range(shards):
        rep = out / ("shard-%d.json" % i)
        rep.unlink(missing_ok=True)
        env = dict(os.environ, FAULT_SOAK="1", FAULT_SEED=str(base + i), FAULT_SESSIONS=str(per[i]),
                   FAULT_REPORT=str(rep))
        log = open(out / ("shard-%d.log" % i), "w")
        cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--basetemp",
               str(out / ("tmp-%d" % i)), "host_tests/test_fault_injection.py", "-k", "soak"]
        procs.append((i, base + i, per[i], rep, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                                                 stderr=subprocess.STDOUT), log))
    results = []
    for i, seed, n, rep, p, log in procs:
        rc = p.wait()
        log.close()
        try:
            r = json.loads(rep.read_text())
        except (OSError, ValueError):
            r = None
        results.append((i, seed, n, rc, r))
    wall = time.time() - t0
    faults, checked, lost, absorbed, ops_checked, outcomes = (Counter() for _ in range(6))
    sec = Counter()
    tot = Counter()
    problems = []
    for i, seed, n, rc, r in results:
        if r is None:
            problems.append("shard %d (seed %d): no report (exit %s); see %s" % (
                i, seed, rc, out / ("shard-%d.log" % i)))
            continue
        add(faults, r["faults"])
        add(checked, r["checked"])
        add(lost, r["lost"])
        add(absorbed, r["absorbed"])
        add(ops_checked, r["ops_checked"])
        add(outcomes, r["ops_outcomes"])
        add(sec, r["security"])
        for k in ("lives", "transactions", "dup_tx", "uncertain", "ghosts", "unsure", "thinned", "csms_restarts",
                  "cuts", "half_open", "flash_cuts"):
            tot[k] += r[k]
        tot["session_s"] += r["time"]["total"]
        problems += ["shard %d (seed %d): %s" % (i, seed, p) for p in r["problems"]]
        if rc and not r["problems"]:
            problems.append("shard %d (seed %d): pytest exited %d; see its log" % (i, seed, rc))
    sessions = sum(n for _, _, n, _, r in results if r)
    lines = [
        "soak report: %d sessions in %d shards, wall time %.0f s (%.1f s per session; %.1f s per session in "
        "one shard)" % (sessions, shards, wall, wall / max(sessions, 1), tot["session_s"] / max(sessions, 1)),
        "  faults injected: %d (%s)" % (sum(faults.values()), ", ".join("%s %d" % kv for kv in sorted(faults.items()))),
        "  firmware lives %d, transactions started %d, flash cuts that happened %d, CSMS restarts %d, link cuts %d, "
        "half-open %d" % (tot["lives"], tot["transactions"], tot["flash_cuts"], tot["csms_restarts"], tot["cuts"],
                          tot["half_open"]),
        "  transaction messages checked: %d (%s)" % (sum(checked.values()),
                                                    ", ".join("%s %d" % kv for kv in sorted(checked.items()))),
        "  lost = %d (%s), duplicated transactions = %d; retransmissions absorbed by the CSMS: %s" % (
            sum(lost.values()), ", ".join("%s %d" % kv for kv in sorted(lost.items())) or "none", tot["dup_tx"],
            ", ".join("%s %d" % kv for kv in sorted(absorbed.items())) or "none"),
        "  security events checked %d, lost %d, duplicated %d (retransmissions absorbed %d, after a flash cut %d, "
        "two in one second under one key %d)" % (sec["checked"], sec["lost"], sec["duplicated"], sec["absorbed"],
                                                 sec["ghosts"], sec["merged"]),
        "  operations checked: %s" % (", ".join("%s %d" % kv for kv in sorted(ops_checked.items())) or "none"),
        "  operation outcomes: %s" % (", ".join("%s x%d" % kv for kv in sorted(outcomes.items())) or "none"),
        "  not required: starts killed before stored %d, starts after a flash cut %d, samples just before a kill %d;"
        " thinned by design %d" % (tot["uncertain"], tot["ghosts"], tot["unsure"], tot["thinned"]),
        "  shards (replay one: make soak SHARDS=1 FAULT_SESSIONS=<n> FAULT_SEED=<seed>):",
    ]
    for i, seed, n, rc, r in results:
        lines.append("    shard %d: seed %d, %d sessions, %s%s" % (
            i, seed, n, "%d problems" % len(r["problems"]) if r else "no report",
            ", %.0f s" % r["time"]["total"] if r else ""))
    if problems:
        lines.append("  PROBLEMS (%d):" % len(problems))
        lines += ["  - " + p for p in problems]
    text = "\n".join(lines)
    print(text, flush=True)
    (out / "report.txt").write_text(text + "\n")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
