"""`hrm serve --checkpoint PATH`: serve a trained model over HTTP (FastAPI on uvicorn; `pip install 'hrmkit[serve]'`).

    hrm serve --checkpoint runs/RUN_ID                       http://127.0.0.1:8000 (playground at /, API docs at /docs)
    hrm serve --checkpoint RUN --token-file token.txt --host 0.0.0.0 --port 8080

Options are checked before the model loads: a missing or empty token file, or a non-loopback address without a
token (unless --insecure), is refused with `hrm: error: ...` and exit code 2. SIGTERM (or Ctrl-C) stops
accepting connections, lets the requests in flight finish (at most --grace-s seconds), runs every queued puzzle
and exits 0 (SIGINT: 130).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path

from hrmkit.errors import HrmkitError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve a trained model over HTTP: a JSON API with dynamic batching and a browser playground",
        description="Serve a trained model: POST /v1/solve, GET /v1/model, /healthz, /metrics (Prometheus), the "
        "playground page at / and OpenAPI docs at /docs. Concurrent requests are batched into one forward pass.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="a run folder (its newest checkpoint), RUN/best/, a checkpoint file or an exported folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--token-file", metavar="F", help="a file holding the bearer token every route but /healthz "
                   "then requires")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without --token-file")
    p.add_argument("--max-batch", type=int, default=32, metavar="B", help="puzzles per forward pass (1: no batching; "
                   "default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, metavar="W", help="how long the first puzzle of a batch "
                   "waits for others (default 5 ms)")
    p.add_argument("--max-queue", type=int, default=256, metavar="Q", help="puzzles allowed to wait; past it 503 with "
                   "Retry-After (default 256)")
    p.add_argument("--max-body-kb", type=int, default=1024, metavar="KB", help="request body limit (default 1024 KiB)")
    p.add_argument("--max-segments", type=int, default=64, metavar="N", help="the most ACT segments a request may ask "
                   "for (default 64)")
    p.add_argument("--grace-s", type=int, default=8, metavar="S", help="on SIGTERM, how long requests in flight may "
                   "take to finish (default 8 s)")
    p.add_argument("--data", metavar="DIR", help="the dataset the model was trained on, when its data_path does not "
                   "lead there")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where to run (default: cpu)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch intra-op threads (default: torch's)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info: one line per request)")
    p.set_defaults(func=_serve)


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: str) -> str:
    """The token in `path` (surrounding whitespace dropped). HrmkitError for a missing, unreadable or empty file."""
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise HrmkitError(f"--token-file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not token:
        raise HrmkitError(f"--token-file {path}: the file is empty")
    if any(c.isspace() for c in token):
        raise HrmkitError(f"--token-file {path}: the token holds whitespace (one token on one line)")
    return token


def _check_options(args: argparse.Namespace) -> None:
    for name, low in (("max_batch", 1), ("max_queue", 1), ("max_body_kb", 1), ("max_segments", 1), ("grace_s", 0),
                      ("port", 0)):
        if getattr(args, name) < low:
            raise HrmkitError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    from hrmkit.limits import MAX_SEGMENTS

    if args.max_segments > MAX_SEGMENTS:
        raise HrmkitError(f"--max-segments must be <= {MAX_SEGMENTS} (hrmkit.limits.MAX_SEGMENTS), got {args.max_segments}")
    if args.port > 65535:
        raise HrmkitError(f"--port must be <= 65535, got {args.port}")
    if args.max_wait_ms < 0:
        raise HrmkitError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    if args.threads is not None and args.threads < 1:
        raise HrmkitError(f"--threads must be >= 1, got {args.threads}")
    if not is_loopback(args.host) and not args.token_file and not args.insecure:
        raise HrmkitError(f"--host {args.host}: not a loopback address, and no --token-file: anyone who can reach it "
                          "could use the model. Give --token-file F, or --insecure to serve without a token")


def check_bind(host: str, port: int) -> None:
    """HrmkitError naming --host/--port when the address cannot be bound (in use, not this machine's), before
    minutes go into loading a model."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise HrmkitError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(addr)
        except OSError as e:
            raise HrmkitError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None


def _serve(args: argparse.Namespace) -> int:
    _check_options(args)
    check_bind(args.host, args.port)
    token = read_token(args.token_file) if args.token_file else None
    try:
        import uvicorn

        from hrmkit.deploy.serve import ServeSettings, create_app
    except ModuleNotFoundError as e:
        raise HrmkitError(f"hrm serve needs {e.name}: pip install 'hrmkit[serve]'") from None
    import torch

    from hrmkit.deploy.api import load

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.checkpoint, args.device, data=args.data)
    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                             max_body_bytes=args.max_body_kb * 1024, max_segments=args.max_segments, token=token,
                             drain_s=1.0)  # requests in flight already had --grace-s; what is left is abandoned
    app = create_app(model, settings)
    # uvicorn answers 503 past this many connections and tasks at once: the queue bounds puzzles, this bounds
    # sockets, so neither grows without limit under a flood.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=args.grace_s,
                            limit_concurrency=args.max_queue + args.max_batch + 64,
                            proxy_headers=False, server_header=False)
    server = uvicorn.Server(config)
    print(f"hrm serve: {model!r}\nhrm serve: http://{args.host}:{args.port}/ (playground), /docs (API), "
          f"max batch {args.max_batch}, max wait {args.max_wait_ms} ms, queue {args.max_queue}"
          + (", token required" if token else ""), file=sys.stderr, flush=True)
    # uvicorn re-raises the signal it shut down for once its own handlers are gone; a SIGTERM that ended in a
    # clean drain is a normal exit here (status 0), so it lands on a handler that does nothing.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits this way when it cannot start (the reason is in its log above)
        raise HrmkitError(f"--host {args.host} --port {args.port}: the server could not start (uvicorn exit "
                          f"status {e.code})") from None
    if app.state.batcher.busy:
        # A batch outlived the grace period; the interpreter would wait for its thread at exit. The shutdown is
        # bounded, so leave now (nothing is written to disk that could be left half done).
        sys.stderr.flush()
        os._exit(0)
    return 0 if server.started else 2
