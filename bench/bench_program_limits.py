"""The cost of hostile program sizes (issue 13), before and after, side by side: parse, abstract execution, hashing and
FCM mutation of programs of thousands of statements.

Each measurement runs in a fresh Python process (so that peak memory is its own) against two trees: this checkout and
a baseline revision exported with ``git archive`` (default ``d8e02ea``, the code before issue 13). Prints seconds,
peak RSS and the outcome of each, and the ratio baseline / now.

FCM runs on 990 statements (990 - 2 dead): below the statement limit, so both trees draw the same edits; ``fcm20``
caps the tries at 20 to compare the cost of one try, ``fcm`` runs the default 1,000 tries.

Run: ``python bench/bench_program_limits.py [--baseline-rev REV] [--quick]``. ``--quick`` skips the 20,000-statement
baseline parse (15-50 s and ~5 GB before the fix).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import json, resource, time
import numpy as np
from programs import Program, Statement, parse, check
from hashing import functional_hash
from programs.mutation import MutationConfig, mutate_with_info

def chain(n, live_tail=None):
    # n statements; with live_tail, all but the last live_tail are dead code
    dead = n - (live_tail or n)
    s = [Statement(f"d{i}", "interp", (f"d{i-1}" if i else "g", "m", 0.9)) for i in range(dead)]
    s += [Statement(f"x{i}", "interp", (f"x{i-1}" if i else "g", "m", 0.9)) for i in range(n - dead - 1)]
    s.append(Statement("update", "mul", (s[-1].target if n - dead > 1 else "g", "lr")))
    return Program(tuple(s))

def text(n):
    # short lines, as in the issue (10,000 statements in ~200 KB): inside the text limit, over the statement limit
    lines = ["def train(w, g, m, v, lr):"] + [f"    x{i} = {f'x{i-1}' if i else 'g'} * 0.5" for i in range(n - 1)]
    return "\\n".join(lines + [f"    update = x{n-2} * lr", "    return update, m, v", ""])

def report(outcome, start):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - start, "rss_mb": rss, "outcome": outcome}))
"""

CASES = {
    "parse": """
t = text({n}); start = time.perf_counter()
try:
    outcome = f"accepted, {{len(parse(t))}} statements"
except ValueError as e:
    outcome = "rejected: " + str(e)[:60]
report(outcome, start)
""",
    "check": """
p = chain({n}); start = time.perf_counter(); check(p); report("valid", start)
""",
    "hash": """
p = chain({n}); start = time.perf_counter(); functional_hash(p); report("hashed", start)
""",
    "fcm20": """
p = chain({n}, live_tail=2); start = time.perf_counter()
child, info = mutate_with_info(p, np.random.default_rng(0), MutationConfig(fcm=True, fcm_tries=20))
report(info.kind, start)
""",
    "fcm": """
p = chain({n}, live_tail=2); start = time.perf_counter()
child, info = mutate_with_info(p, np.random.default_rng(0), MutationConfig(fcm=True))
report(info.kind, start)
""",
}


def measure(tree: Path, case: str, n: int, timeout: float) -> dict:
    code = SETUP + CASES[case].format(n=n)
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": float("inf"), "rss_mb": float("nan"), "outcome": f"over {timeout:.0f} s (stopped)"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"seconds": float("nan"), "rss_mb": float("nan"), "outcome": f"crashed: {last[:60]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def export(rev: str, into: Path) -> Path:
    archive = into / "baseline.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "programs", "hashing"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree")
    return into / "tree"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default="d8e02ea")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per baseline measurement")
    args = parser.parse_args()
    plan = [("parse", 1_000), ("parse", 6_000), ("parse", 10_000), ("parse", 20_000), ("check", 10_000), ("check", 20_000),
            ("hash", 1_000), ("hash", 3_000), ("fcm20", 990), ("fcm", 990)]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = export(args.baseline_rev, Path(tmp))
        print(f"{'case':<14}{'baseline':>30}{'now':>30}{'time ratio':>12}{'rss ratio':>11}")
        for case, n in plan:
            skip = args.quick and case == "parse" and n == 20_000
            before = ({"seconds": float("nan"), "rss_mb": float("nan"), "outcome": "skipped (--quick)"} if skip
                      else measure(baseline, case, n, args.timeout))
            now = measure(ROOT, case, n, args.timeout)
            ratio = before["seconds"] / now["seconds"] if now["seconds"] > 0 else float("nan")
            memory = before["rss_mb"] / now["rss_mb"] if now["rss_mb"] > 0 else float("nan")
            print(f"{case + ' ' + format(n, ','):<14}"
                  f"{before['seconds']:>8.2f} s {before['rss_mb']:>6.0f} MB {before['outcome'][:10]:>10}"
                  f"{now['seconds']:>8.2f} s {now['rss_mb']:>6.0f} MB {now['outcome'][:10]:>10}"
                  f"{ratio:>11.1f}x{memory:>10.1f}x")
            if now["outcome"].startswith("rejected"):
                print(f"{'':<14}now: {now['outcome']}")


if __name__ == "__main__":
    main()
