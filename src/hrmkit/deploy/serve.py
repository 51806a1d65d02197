"""`hrm serve`'s HTTP application: a trained model behind FastAPI, concurrent requests batched.

    POST /v1/solve   {"input": <Sudoku string | maze text | grid | ARC task>, "segments": n, "tta": k, "trace": bool}
                     -> {"answer", "segments_run", "halted_at", "valid", "latency_ms"[, "trace"]}
    GET  /v1/model   the task, the architecture and configuration, the model card (the run's recorded evaluation,
                     or an exported folder's README.md)
    GET  /healthz    {"status": "ok"} (never needs the token: load balancers probe it)
    GET  /metrics    Prometheus text: hrmkit_requests_total{route,status}, hrmkit_request_latency_seconds{route},
                     hrmkit_batch_size, hrmkit_batch_seconds, hrmkit_queue_depth,
                     hrmkit_requests_in_flight{route}
    GET  /           the playground page (static/playground.html)
    GET  /docs       OpenAPI documentation (FastAPI's)

Bad input never reaches the model: a body that is not JSON is a 400 (415 without a JSON Content-Type), a wrong
field, a wrong length, a character outside the alphabet or a ragged grid a 422, each
`{"error": "...", "field": "<name>"}`; a body over `max_body_bytes` a 413; a full queue a 503 with Retry-After. With a token every route but /healthz needs
`Authorization: Bearer <token>` (compared with hmac.compare_digest); a browser may instead open any page once with
`?token=...`, which sets a SameSite=Strict, HttpOnly cookie holding it.

Grid puzzles (Sudoku, mazes, a lone ARC grid) go through the `batching.MicroBatcher`; an ARC task (its
demonstrations select the puzzle embeddings) is solved as `hrm solve` does (`solve.solve_arc`: every augmented
version voted), on the same model thread, one task at a time.
"""
# No `from __future__ import annotations` here: FastAPI reads the annotations of the route functions, which are
# defined inside `create_app`, at run time.

import hmac
import json
import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from hrmkit import tasks
from hrmkit.deploy.batching import Job, MicroBatcher, Overloaded, RowResult, run_model
from hrmkit.errors import HrmkitError
from hrmkit.halting import halting_decisions

log = logging.getLogger("hrmkit.serve")

ROUTES = ("/", "/healthz", "/metrics", "/v1/model", "/v1/solve", "/docs", "/openapi.json")
TOKEN_COOKIE = "hrmkit_token"


@dataclass
class ServeSettings:
    """Server limits. max_batch: puzzles per forward pass (1 = no batching); max_wait_ms: how long a batch's
    first puzzle waits for others; max_queue: puzzles allowed to wait before 503; max_body_bytes: request body
    limit (413 past it); max_segments: the most ACT segments one request may ask for; token: the bearer token
    (None: no authentication); drain_s: on shutdown, how long queued puzzles may take to finish."""

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_body_bytes: int = 1 << 20
    max_segments: int = 64
    token: str | None = None
    drain_s: float = 1.0


def _error(status: int, message: str, field: str | None, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


class RequestError(Exception):
    """A request the server refuses (4xx): HTTP status, the field at fault and a message naming it."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field = status, field


class SolveRequest(BaseModel):
    """One puzzle: a Sudoku string (or grid of digits, 0 = blank), maze text (or its lines), an ARC grid,
    or, for an ARC model, an ARC task {"train": [...], "test": [...]} with `task_id`."""

    model_config = ConfigDict(extra="forbid")
    input: str | list[Any] | dict[str, Any]
    segments: StrictInt | None = Field(None, ge=1, description="ACT segments to run (default halt_max_steps)")
    tta: StrictInt | None = Field(None, ge=1, description="test-time augmentation versions (1: none)")
    trace: StrictBool = Field(False, description="also return the answer after every segment")
    task_id: str | None = Field(None, description="ARC task id (selects the puzzle embeddings)")


# --------------------------------------------------------------------------------------------- body limit

class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware answering 413 for a body over `max_bytes`, by its Content-Length or while it streams,
    so an oversized body is never read into memory whole."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _reply_413(self, send: Any) -> None:
        body = json.dumps({"error": f"body: larger than the limit of {self.max_bytes} bytes", "field": "body"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reply_413(send)
            return
        seen, started = 0, False

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._reply_413(send)


# ------------------------------------------------------------------------------------------------ inputs

def _grid_rows(value: list[Any], field: str) -> list[list[Any]]:
    """A list of equal-length lists (RequestError naming the first ragged or non-list row)."""
    if not value:
        raise RequestError(422, field, f"{field}: an empty grid")
    for r, row in enumerate(value):
        if not isinstance(row, list):
            raise RequestError(422, field, f"{field}[{r}]: expected a row (a list), got {type(row).__name__}")
        if len(row) != len(value[0]):
            raise RequestError(422, field, f"{field}[{r}]: {len(row)} cells, row 0 has {len(value[0])} "
                               "(a grid is a rectangle)")
    return value


def encode_grid_input(model: Any, value: Any) -> np.ndarray:
    """Tokens int [seq_len] of the `input` of a request for a single-puzzle model (its task's natural form,
    `Model.encode`; RequestError 422 naming `input` for anything malformed)."""
    try:
        if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
            _grid_rows(value, "input")
        return model.encode(value, "input")
    except HrmkitError as e:
        raise RequestError(422, "input", str(e)) from None


def verdict(task: Any, input_tokens: np.ndarray, answer_tokens: np.ndarray) -> bool | None:
    """The task's check of an answer row (`Task.check(...).solved`: Sudoku, a complete valid grid keeping
    every clue; maze, a path from S to G that only marks open cells); None for a task without rules."""
    check = tasks.resolve(task).check(np.asarray(input_tokens), np.asarray(answer_tokens))
    return None if check is None else bool(check.solved)


# ---------------------------------------------------------------------------------------------- metrics

class Metrics:
    """The Prometheus metrics of one app, in their own registry (two apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("hrmkit_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("hrmkit_request_latency_seconds", "Request latency by route", ["route"],
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.batch_size = Histogram("hrmkit_batch_size", "Puzzles per forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.batch_seconds = Histogram("hrmkit_batch_seconds", "Seconds per forward pass (all ACT segments)",
                                       buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                       registry=self.registry)
        self.queue_depth = Gauge("hrmkit_queue_depth", "Puzzles waiting for a forward pass", registry=self.registry)
        self.in_flight = Gauge("hrmkit_requests_in_flight", "Requests being answered, by route", ["route"],
                               registry=self.registry)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# --------------------------------------------------------------------------------------------- the app

def model_info(model: Any) -> dict[str, Any]:
    """What GET /v1/model answers: task, architecture, sizes, training config and the model card (an exported
    folder's README.md, else the evaluation the run recorded at this step, when any)."""
    from hrmkit.deploy.card import recorded_evaluation
    from hrmkit.loading import run_dir_of

    card: dict[str, Any] = {"readme": None, "evaluation": None}
    readme = model.path / "README.md" if model.path.is_dir() else None
    if readme is not None and readme.is_file():
        card["readme"] = readme.read_text(errors="replace")
    else:
        try:
            card["evaluation"] = recorded_evaluation(model.trained, run_dir_of(model.path))
        except (OSError, ValueError, HrmkitError):
            pass
    return {"task": model.kind, "task_title": model.task.title, "task_description": model.task.description,
            "example": example_input(model), "arch": model.config.arch.name,
            "parameters": model.num_parameters, "step": model.step, "seq_len": model.seq_len,
            "vocab_size": model.vocab_size,
            "side": int(round(model.seq_len ** 0.5)), "halt_max_steps": model.halt_max_steps,
            "path": str(model.path), "config": json.loads(json.dumps(model.config.model_dump(), default=str)),
            "card": card}


def example_input(model: Any) -> Any:
    """The first test puzzle of the model's dataset in its natural form (the playground's Example), or None
    when the dataset is not at hand."""
    if model.dataset_dir is None:
        return None
    try:
        rows = np.load(model.dataset_dir / "test" / "all__inputs.npy", mmap_mode="r")
        return model.decode(np.asarray(rows[0])) if len(rows) and rows.shape[1] == model.seq_len else None
    except (OSError, ValueError):
        return None


def _playground() -> str:
    return resources.files("hrmkit.deploy").joinpath("static/playground.html").read_text(encoding="utf-8")


def _route_of(path: str) -> str:
    return path if path in ROUTES else "other"


def _token_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def create_app(model: Any, settings: ServeSettings | None = None) -> Any:
    """The FastAPI app serving `model` (an `hrmkit.deploy.api.Model` whose task has a natural form). The batcher starts
    with the app's lifespan and, on shutdown, runs the puzzles still queued (for at most `settings.drain_s`)
    before the app ends. Raises HrmkitError when the model's task is unknown."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or ServeSettings()
    model.task.require_natural_form(str(model.path))
    metrics = Metrics()
    batcher = MicroBatcher(lambda jobs: run_model(model, jobs), settings.max_batch, settings.max_wait_ms,
                           settings.max_queue, on_batch=metrics.on_batch, on_queue=metrics.queue_depth.set)
    info = model_info(model)
    page = _playground()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            if not await batcher.stop(settings.drain_s):
                log.warning("stopped with a batch still running after %.0f s; its requests get no answer",
                            settings.drain_s)

    app = FastAPI(title="hrmkit", description="A trained HRM/TRM model: solve Sudoku, mazes and ARC grids.",
                  lifespan=lifespan)
    app.state.batcher, app.state.metrics, app.state.settings = batcher, metrics, settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.middleware("http")
    async def gate(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        route = _route_of(request.url.path)
        set_cookie = None
        if settings.token is not None and route != "/healthz":
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth[:7].lower() == "bearer " else request.cookies.get(TOKEN_COOKIE)
            query = request.query_params.get("token")
            if not _token_ok(settings.token, given) and query is not None and _token_ok(settings.token, query):
                given, set_cookie = query, query
            if not _token_ok(settings.token, given):
                response = _error(401, "authorization: a valid 'Authorization: Bearer <token>' header is required",
                                  "authorization", {"WWW-Authenticate": "Bearer"})
                metrics.requests.labels(route, "401").inc()
                return response
        gauge = metrics.in_flight.labels(route)
        gauge.inc()
        try:
            response = await call_next(request)
        finally:
            gauge.dec()
        if set_cookie is not None:
            response.set_cookie(TOKEN_COOKIE, set_cookie, httponly=True, samesite="strict")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Any:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "invalid"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        if first.get("type") == "json_invalid":
            return _error(400, f"body: not valid JSON ({first.get('msg')})", "body")
        if first.get("type") == "missing" and not loc:
            return _error(400, "body: expected a JSON object with an 'input' field", "body")
        content_type = request.headers.get("content-type", "")
        if not loc and "json" not in content_type:
            # FastAPI reads a body as JSON only when it says so (a guard against cross-site form posts)
            return _error(415, f"body: send a JSON object with 'Content-Type: application/json' (got "
                          f"{content_type or 'no Content-Type'})", "body")
        if loc and loc[0] == "input" and len(loc) > 1 and not loc[1].isdigit():  # no member of the union fitted
            got = type(first.get("input")).__name__
            return _error(422, f"input: expected a puzzle string, a grid (a list of rows) or an ARC task object, "
                          f"got {got}", "input")
        return _error(422, f"{field}: {first.get('msg')}", loc[0] if loc else "body")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        field = "body" if exc.status_code == 400 else None
        return _error(exc.status_code, f"body: {exc.detail}" if field else str(exc.detail), field, exc.headers)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> Any:
        return _error(exc.status, str(exc), exc.field)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> Any:
        return _error(503, f"overloaded: {exc}; retry later", None, {"Retry-After": str(exc.retry_after_s)})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: answers without a token."""
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model_route() -> dict[str, Any]:
        """The task this model solves, its architecture, configuration and model card."""
        return info

    @app.get("/metrics")
    async def metrics_route() -> Response:
        """Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST

        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def playground() -> str:
        """The playground: type or click a puzzle, press Solve, watch the answer form segment by segment."""
        return page

    @app.post("/v1/solve")
    async def solve(req: SolveRequest) -> dict[str, Any]:
        """Solve one puzzle. `answer` is in the input's natural form; `halted_at` is the first segment after
        which the halting rule said stop; `valid` is the task's verifier (null where there is none)."""
        t0 = time.perf_counter()
        segments = model.halt_max_steps if req.segments is None else req.segments
        if segments > settings.max_segments:
            raise RequestError(422, "segments", f"segments: {segments} is more than this server's limit of "
                               f"{settings.max_segments}")
        if model.task.votes_over_dataset_versions and isinstance(req.input, dict):
            out = await _solve_arc_task(req, segments)
        else:
            if isinstance(req.input, dict):
                raise RequestError(422, "input", f"input: an object is an ARC task, but this model solves "
                                   f"{model.kind} puzzles")
            if req.task_id is not None:
                raise RequestError(422, "task_id", "task_id: only for an ARC task given as an object")
            enc = encode_grid_input(model, req.input)
            if req.tta is not None and req.tta > 1:
                return {**await _solve_voted(enc, req.tta, segments), "latency_ms": round((time.perf_counter() - t0) * 1000, 3)}
            row: RowResult = await batcher.submit(Job(enc, 0, segments))
            out = {"answer": model.decode(row.tokens), "segments_run": segments, "halted_at": row.halted_at,
                   "valid": verdict(model.task, enc, row.tokens)}
            if req.trace:
                out["trace"] = [{"segment": i + 1, "answer": model.decode(t), "q_halt": row.q_halt[i],
                                 "q_continue": None if row.q_continue is None else row.q_continue[i],
                                 "halt": bool(halting_decisions(row.q_halt[i], None if row.q_continue is None else row.q_continue[i])),
                                 "valid": verdict(model.task, enc, t)}
                                for i, t in enumerate(row.segment_tokens)]
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return out

    async def _solve_voted(enc: Any, tta: int, segments: int) -> dict[str, Any]:
        """A Sudoku or maze voted over `tta` augmented versions (`Model.predict_tta`): the top answer, the vote
        table, and `halted_at` null (each version halts on its own; the vote is over answers after `segments`)."""
        try:
            voted = await batcher.run_exclusive(lambda: model.predict_tta(enc[None], tta, segments=segments))
        except HrmkitError as e:
            raise RequestError(422, "tta", f"tta: {e}") from None
        top = voted.tokens[0].numpy()
        return {"answer": model.decode(top), "segments_run": voted.segments, "halted_at": None,
                "valid": verdict(model.task, enc, top), "versions": voted.versions,
                "votes": [{"answer": model.decode(a), "votes": int(v), "mean_q_halt": float(q)}
                          for a, v, q in voted.ranked[0]]}

    async def _solve_arc_task(req: Any, segments: int) -> dict[str, Any]:
        from hrmkit.deploy.solve import solve_arc
        from hrmkit.tasks.arc import parse_arc_task

        if not req.task_id:
            raise RequestError(422, "task_id", "task_id: an ARC task needs its id (its demonstrations were learnt as "
                               "puzzle embeddings named after it)")
        try:
            task = parse_arc_task(req.input, req.task_id, "input")
            result = await batcher.run_exclusive(lambda: solve_arc(model, task, segments))
        except HrmkitError as e:
            raise RequestError(422, "input", str(e)) from None
        tests = [{"answers": [{"grid": a.grid.tolist(), "votes": a.votes, "correct": a.correct} for a in t.answers[:2]],
                  "halted_at": t.thinking.halt_step} for t in result.tests]
        correct = [t["answers"][0]["correct"] if t["answers"] else False for t in tests]
        known = all(c is not None for c in correct)
        return {"answer": [t["answers"][0]["grid"] if t["answers"] else None for t in tests],
                "segments_run": segments, "halted_at": [t["halted_at"] for t in tests],
                "valid": all(correct) if known else None, "tests": tests, "versions": result.versions}

    return app

