"""`hrm serve` under load: throughput and p50/p99 latency against 1, 8, 32 and 128 concurrent clients,
batching on (--max-batch 32 --max-wait-ms 5) and off (--max-batch 1), on loopback.

    .venv/bin/python benchmarks/bench_serve.py --checkpoint runs/RUN [--requests 400] [--clients 1,8,32,128]
                                               [--time-limit-s 60] [--threads 1] [--markdown]

For each setting a fresh `hrm serve` process is started on a free 127.0.0.1 port (nothing leaves the machine)
and each client count gets a fixed number of requests (`--requests`, at least 2 per client) and a time
limit; the clients are asyncio tasks on one httpx.AsyncClient, each posting the next test puzzle of the
model's dataset as soon as its previous answer arrived (closed loop). Latency is client-side wall clock per
request; throughput is answered requests / wall seconds. Requests not sent before the time limit are counted
as `not sent`; non-200 answers as errors. The client shares the CPU with the server: on a 2-core machine the
numbers include that contention, as they would for a client on the same host.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: str, extra: list[str], threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "hrmkit.cli", "serve", "--checkpoint", checkpoint, "--port",
                             str(port), "--log-level", "warning", "--threads", str(threads), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hrm serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("hrm serve did not start in 120 s")


async def load(url: str, puzzles: list, clients: int, requests: int, time_limit_s: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=time_limit_s, limits=limits) as client:
        t_end = time.perf_counter() + time_limit_s

        async def worker() -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() < t_end:
                i = sent
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/solve", json={"input": puzzles[i % len(puzzles)]})
                    why = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    why = type(e).__name__
                if why is None:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[why] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"clients": clients, "answered": len(latencies), "errors": sum(errors.values()),
            "error_kinds": dict(errors), "not_sent": requests - sent,
            "wall_s": wall, "rps": len(latencies) / wall if wall else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan")}


def batch_stats(url: str) -> tuple[float, float]:
    """(forward passes, puzzles) so far, from /metrics."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    get = lambda name: sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + " "))
    return get("hrmkit_batch_size_count"), get("hrmkit_batch_size_sum")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--requests", type=int, default=400, help="requests per client count (default 400)")
    ap.add_argument("--clients", default="1,8,32,128")
    ap.add_argument("--time-limit-s", type=float, default=60.0, help="per client count (default 60)")
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads (default 1)")
    ap.add_argument("--batching", default="on,off", help="which settings to run (default on,off)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()

    import hrmkit

    model = hrmkit.load(args.checkpoint)
    from hrmkit.data.format import load_split

    rows = np.asarray(load_split(model.dataset_dir, "test").sets["all"].inputs[:500])
    puzzles = [model.decode(r) for r in rows]
    clients = [int(c) for c in args.clients.split(",")]
    settings = {"on (max-batch 32, max-wait 5 ms)": ["--max-batch", "32", "--max-wait-ms", "5"],
                "off (max-batch 1)": ["--max-batch", "1", "--max-wait-ms", "0"]}
    print(f"# {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {model!r}; server threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs", flush=True)
    results = []
    wanted = args.batching.split(",")
    for name, extra in settings.items():
        if name.split()[0] not in wanted:
            continue
        proc, url = start_server(args.checkpoint, extra, args.threads)
        try:
            asyncio.run(load(url, puzzles, 4, 20, 30))  # warm-up, not reported
            for c in clients:
                before = batch_stats(url)
                r = asyncio.run(load(url, puzzles, c, max(args.requests, 2 * c), args.time_limit_s))
                after = batch_stats(url)
                r["mean_batch"] = (after[1] - before[1]) / max(1.0, after[0] - before[0])
                r["batching"] = name
                results.append(r)
                print(f"batching {name:34s} clients {c:4d}: {r['answered']:5d} answered, {r['errors']} errors "
                      f"{r['error_kinds'] or ''}, "
                      f"{r['not_sent']} not sent, {r['rps']:7.1f} req/s, p50 {r['p50_ms']:8.1f} ms, p99 "
                      f"{r['p99_ms']:8.1f} ms, mean batch {r['mean_batch']:.1f}", flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.markdown:
        print("\n| batching | clients | requests answered | errors | req/s | p50 ms | p99 ms | mean batch |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['batching']} | {r['clients']} | {r['answered']} | {r['errors']} | {r['rps']:.1f} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_batch']:.1f} |")


if __name__ == "__main__":
    main()
