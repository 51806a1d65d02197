"""Benchmark the ARC dataset build: wall time and peak memory of `hrm data arc` (not part of the test suite).

    python benchmarks/bench_arc_build.py [--version 1] [--num-aug 1000] [--out /tmp/arc1k] [--workers 0]

Runs `hrm data arc ...` (as `python -m hrmkit.cli data arc ...`) as a child process, under
`/usr/bin/time -v` when present, and samples /proc every 0.1 s for the whole process tree (build process and
its workers). Reports, as one JSON object on stdout:
- wall_s: elapsed seconds; cpu_user_s / cpu_sys_s: CPU seconds of the tree;
- peak_tree_pss_gib: the largest sum of PSS (proportional set size: shared pages split between the
  processes that share them) over the tree at one sample; it includes file pages mapped by memmap, which
  the kernel can drop; peak_tree_anon_gib: the same for anonymous memory only (Pss_Anon, what really has
  to fit in RAM); peak_process_rss_gib: the largest RSS of one process (ru_maxrss of the children, which is
  also what `/usr/bin/time -v` prints as "Maximum resident set size");
- load_before / load_after: the 1-minute load average (other processes share the cores: compare with
  cpu_count); output size on disk; the build's progress lines (elapsed seconds after each tenth of the
  tasks, then the summary: the time between the last two is spent converting spools to .npy files).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

GIB = 1024**3


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry.name))
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _mem_kib(pid: int) -> tuple[int, int]:
    """(Pss, Pss_Anon) of one process in KiB: its proportional share, so a sum over processes that share
    pages (forked workers) counts each page once."""
    pss = anon = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Pss_Anon:"):
                    anon = int(line.split()[1])
    except OSError:
        pass
    return pss, anon


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--num-aug", type=int, default=1000)
    ap.add_argument("--out", default="/tmp/arc1k")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the built dataset (default: delete it)")
    args = ap.parse_args()

    cmd = [sys.executable, "-m", "hrmkit.cli", "data", "arc", "--out", args.out, "--version", str(args.version),
           "--num-aug", str(args.num_aug), "--workers", str(args.workers), "--force"]
    time_bin = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if time_bin:
        cmd = [time_bin, "-v", *cmd]
    load_before = os.getloadavg()[0]
    peak = {"pss": 0, "anon": 0}
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    while proc.poll() is None:
        mems = [_mem_kib(p) for p in _tree(proc.pid)]
        peak["pss"] = max(peak["pss"], sum(m[0] for m in mems))
        peak["anon"] = max(peak["anon"], sum(m[1] for m in mems))
        time.sleep(0.1)
    wall = time.monotonic() - t0
    reader.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file()) if Path(args.out).exists() else 0
    report = {
        "command": " ".join(cmd),
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "cpu_user_s": round(usage.ru_utime, 1),
        "cpu_sys_s": round(usage.ru_stime, 1),
        "peak_tree_pss_gib": round(peak["pss"] * 1024 / GIB, 2),
        "peak_tree_anon_gib": round(peak["anon"] * 1024 / GIB, 2),
        "peak_process_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 2),
        "cpu_count": os.cpu_count(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "output_gib": round(size / GIB, 2),
        "build_log": [ln.strip() for ln in stderr_lines if ln.startswith("arc: ")],
    }
    for ln in stderr_lines:  # what /usr/bin/time -v says, for comparison
        key, _, value = ln.strip().partition(": ")
        if key in ("Maximum resident set size (kbytes)", "Percent of CPU this job got",
                   "Elapsed (wall clock) time (h:mm:ss or m:ss)"):
            report[f"time_v: {key}"] = value
    if proc.returncode != 0:
        sys.stderr.writelines(stderr_lines[-30:])
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
