"""`hrm serve`: what it promises, on loopback against a real `hrm serve` process (a solve answers
200; malformed bodies get 4xx and the server keeps serving; a burst of 300 requests 20 at a time all 200; `/`
and `/metrics`; token 401/200; SIGTERM drains and exits 0 within 10 s), the batcher (mixed segment counts in one
pass equal `Model.predict` row by row; a full queue refuses at once), body limit and 503 in process, option
refusals, and the playground driven in Chromium by Playwright (skipped without a browser)."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

import hrmkit  # noqa: E402
from hrmkit.cli import main as hrm  # noqa: E402
from hrmkit.data.format import load_split  # noqa: E402
from hrmkit.deploy import batching, serve  # noqa: E402
from hrmkit.deploy.batching import Job, MicroBatcher, Overloaded, run_model  # noqa: E402
from hrmkit.tasks import maze as maze_task  # noqa: E402

from test_deploy import MAZE, TASK, _untrained_checkpoint, arc_setup, maze_checkpoint  # noqa: E402,F401 (fixtures)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and os.path.exists(p)), None)


@pytest.fixture(scope="module")
def checkpoint(sudoku4, tmp_path_factory):
    """An untrained tiny HRM on the 4x4 Sudoku dataset (3 ACT segments): serving checks plumbing, not skill."""
    return _untrained_checkpoint(tmp_path_factory.mktemp("serve") / "model.pt", sudoku4, seq_len=16, vocab_size=6,
                                 num_puzzle_identifiers=1)


@pytest.fixture(scope="module")
def model(checkpoint):
    return hrmkit.load(checkpoint)


@pytest.fixture(scope="module")
def puzzles(model, sudoku4):
    """The dataset's test puzzles as Sudoku strings."""
    rows = np.asarray(load_split(sudoku4, "test").sets["all"].inputs)
    return [model.decode(r) for r in rows]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`hrm serve` in a subprocess on a free loopback port; `url`, `proc`, `log()`."""

    def __init__(self, tmp: Path, checkpoint: Path, *extra: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "hrmkit.cli", "serve", "--checkpoint", str(checkpoint),
                                      "--port", str(self.port), "--log-level", "warning", *extra],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=ENV)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"hrm serve did not come up in 90 s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


TOKEN = "s3cret-Token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """One server for the module (a start costs seconds): with a token, and long requests allowed so that the
    SIGTERM test (the last to use it) has requests in flight for a while."""
    tmp = tmp_path_factory.mktemp("srv")
    (tmp / "token.txt").write_text(TOKEN + "\n")
    s = Server(tmp, checkpoint, "--token-file", str(tmp / "token.txt"), "--max-segments", "512")
    yield s
    s.stop()


def get(server, path, **kw):
    return httpx.get(server.url + path, headers=AUTH, timeout=60, **kw)


def post(server, path, **kw):
    return httpx.post(server.url + path, headers={**AUTH, **kw.pop("headers", {})}, timeout=60, **kw)


# ------------------------------------------------------------------------------------------ the batcher

def test_run_model_mixes_segment_counts_in_one_pass_and_equals_predict(model, puzzles):
    x = np.stack([model.encode(p) for p in puzzles[:5]])
    segs = [1, 3, 2, 5, 3]
    calls = []
    real = model.predict

    def counting(*a, **k):
        calls.append(k.get("segments"))
        return real(*a, **k)

    model.predict = counting
    try:
        rows = run_model(model, [Job(x[i], 0, s) for i, s in enumerate(segs)])
    finally:
        del model.predict
    assert calls == [5]  # one forward pass for the whole batch, at the largest count
    for i, s in enumerate(segs):
        alone = model.predict(x[i:i + 1], segments=s, keep_segments=True)
        assert np.array_equal(rows[i].tokens, alone.tokens[0].numpy())
        assert np.array_equal(rows[i].segment_tokens, alone.segment_tokens[0].numpy())
        assert rows[i].halted_at == int(alone.halt_step[0])
        assert np.allclose(rows[i].q_halt, alone.q_halt[0].numpy())


def test_batcher_gathers_concurrent_jobs_and_refuses_past_its_queue():
    gate = threading.Event()
    batches = []

    def runner(jobs):
        gate.wait(10)
        batches.append(len(jobs))
        return [j.segments for j in jobs]

    async def scenario():
        b = MicroBatcher(runner, max_batch=4, max_wait_ms=50, max_queue=3)
        b.start()
        first = asyncio.ensure_future(b.submit(Job(np.zeros(1), 0, 1)))
        await asyncio.sleep(0.15)  # the first batch (one job) is now blocked in the runner
        waiting = [asyncio.ensure_future(b.submit(Job(np.zeros(1), 0, k))) for k in (2, 3, 4)]
        await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        with pytest.raises(Overloaded, match="queue is full"):
            await b.submit(Job(np.zeros(1), 0, 9))
        refused_in = time.perf_counter() - t0
        gate.set()
        results = await asyncio.gather(first, *waiting)
        await b.stop()
        with pytest.raises(Overloaded, match="shutting down"):
            await b.submit(Job(np.zeros(1), 0, 1))
        return results, refused_in

    results, refused_in = asyncio.run(scenario())
    assert results == [1, 2, 3, 4] and batches == [1, 3] and refused_in < 0.05


# --------------------------------------------------------------------------- the acceptance list, on loopback

def test_solve_answers_200_with_the_models_answer(server, model, puzzles):
    r = post(server, "/v1/solve", json={"input": puzzles[0], "trace": True})
    assert r.status_code == 200, r.text
    body = r.json()
    pred = model.predict(model.encode(puzzles[0])[None])
    assert body["answer"] == model.decode(pred.tokens[0])
    assert body["segments_run"] == 3 and body["halted_at"] == int(pred.halt_step[0])
    assert isinstance(body["valid"], bool) and body["latency_ms"] > 0
    assert [t["segment"] for t in body["trace"]] == [1, 2, 3] and body["trace"][-1]["answer"] == body["answer"]
    said = [t["halt"] for t in body["trace"]]
    qc = None if pred.q_continue is None else pred.q_continue[0]  # None: TRM halts on q_halt > 0
    assert said == (pred.q_halt[0] > (0.0 if qc is None else qc)).tolist()
    assert body["halted_at"] == (said.index(True) + 1 if True in said else 3)
    # a grid of digits and fewer segments
    grid = [[int(c) if c != "." else 0 for c in puzzles[1][r * 4:r * 4 + 4]] for r in range(4)]
    r = post(server, "/v1/solve", json={"input": grid, "segments": 1})
    assert r.status_code == 200 and r.json()["segments_run"] == 1 and "trace" not in r.json()


@pytest.mark.parametrize("body, status, field, needle", [
    ({"input": "1.3."}, 422, "input", "got 4"),                                  # wrong length
    ({"input": "1.3.x..........."}, 422, "input", "character 'x'"),              # outside the alphabet
    ({"input": [[1, 0, 0, 0], [0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]}, 422, "input", "a grid is a rectangle"),  # ragged
    ({"input": "1...............", "segments": "many"}, 422, "segments", "integer"),  # wrong type
    ({"input": "11.............."}, 422, "input", "digit 1 repeats in row 1"),
    ({"input": "1...............", "segments": 10**6}, 422, "segments", "limit of 512"),
    ({"input": "1...............", "colour": 3}, 422, "colour", "Extra inputs"),
    ({"segments": 2}, 422, "input", "Field required"),
    ("not json at all {", 400, "body", "not valid JSON"),
    ([1, 2, 3], 422, "body", ""),
    ("[" * 5000 + "]" * 5000, 400, "body", "error parsing the body"),
])
def test_malformed_bodies_get_4xx_naming_the_field_and_the_server_keeps_serving(server, puzzles, body, status,
                                                                                field, needle):
    content = body if isinstance(body, str) else json.dumps(body)
    r = post(server, "/v1/solve", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field and needle in err["error"] and "Traceback" not in r.text
    assert post(server, "/v1/solve", json={"input": puzzles[2]}).status_code == 200


def test_a_body_without_a_json_content_type_gets_415_and_unknown_routes_404_in_json(server, puzzles):
    r = post(server, "/v1/solve", content=json.dumps({"input": puzzles[0]}), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["field"] == "body" and "application/json" in r.json()["error"]
    r = get(server, "/v2/nothing")
    assert r.status_code == 404 and r.json()["error"] == "Not Found"


def test_burst_of_300_requests_20_at_a_time_all_answer_200_in_shared_batches(server, puzzles):
    def metric(name):
        text = get(server, "/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    batches_before = metric("hrmkit_batch_size_count")
    limits = httpx.Limits(max_connections=20)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60, limits=limits) as client, \
            ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda i: client.post("/v1/solve", json={"input": puzzles[i % len(puzzles)]}).status_code,
                              range(300)))
    assert codes == [200] * 300
    batches = metric("hrmkit_batch_size_count") - batches_before
    assert 0 < batches < 300  # concurrent requests shared forward passes
    assert get(server, "/healthz").status_code == 200


def test_page_metrics_model_and_docs(server):
    page = get(server, "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<title>hrmkit playground</title>" in page.text and 'id="solve"' in page.text
    m = get(server, "/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    for name in ('hrmkit_requests_total{route="/",status="200"}', "hrmkit_request_latency_seconds_bucket",
                 "hrmkit_batch_size_bucket", "hrmkit_batch_seconds_bucket", "hrmkit_queue_depth"):
        assert name in m.text, name
    assert 'hrmkit_requests_in_flight{route="/metrics"} 1.0' in m.text
    info = get(server, "/v1/model").json()
    assert info["task"] == "sudoku" and info["side"] == 4 and info["halt_max_steps"] == 3 and info["config"]["arch"]
    assert isinstance(info["example"], str) and len(info["example"]) == 16
    assert get(server, "/docs").status_code == 200
    assert "/v1/solve" in get(server, "/openapi.json").json()["paths"]


# ------------------------------------------------------------------------------------ in process: limits

def test_body_limit_413_and_full_queue_503_with_retry_after(model, puzzles, monkeypatch):
    from fastapi.testclient import TestClient

    small = serve.create_app(model, serve.ServeSettings(max_body_bytes=200))
    with TestClient(small) as c:
        r = c.post("/v1/solve", json={"input": puzzles[0] + " " * 300})
        assert r.status_code == 413 and r.json()["field"] == "body"
        assert c.post("/v1/solve", json={"input": puzzles[0]}).status_code == 200

    release = threading.Event()
    real = batching.run_model

    def slow(m, jobs):
        release.wait(10)
        return real(m, jobs)

    monkeypatch.setattr(serve, "run_model", slow)
    app = serve.create_app(model, serve.ServeSettings(max_batch=1, max_wait_ms=0, max_queue=2))
    with TestClient(app) as c, ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(c.post, "/v1/solve", json={"input": puzzles[0]}) for _ in range(8)]
        deadline = time.monotonic() + 10
        while sum(f.done() for f in futures) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)  # at most 1 running + 2 queued; the others are refused without waiting for the model
        time.sleep(0.3)
        done = [f for f in futures if f.done()]
        refused = [f.result() for f in done]
        release.set()
        rest = [f.result() for f in futures if f not in done]
    assert len(refused) >= 5 and {r.status_code for r in refused} == {503}
    # the 2 queued when the flood came, and 1 more if the model thread took one off the queue before it was full
    assert len(rest) in (2, 3) and {r.status_code for r in rest} == {200}
    r503 = next(r for r in refused if r.status_code == 503)
    assert r503.headers["Retry-After"] == "1" and "queue is full" in r503.json()["error"]


def test_model_route_carries_an_exported_folders_model_card(checkpoint, tmp_path):
    from fastapi.testclient import TestClient

    out = tmp_path / "exported"
    assert hrm(["export", str(checkpoint), "--out", str(out)]) == 0
    with TestClient(serve.create_app(hrmkit.load(out))) as c:
        info = c.get("/v1/model").json()
    assert info["task"] == "sudoku" and info["card"]["readme"] == (out / "README.md").read_text()
    assert info["parameters"] > 0 and info["path"].startswith(str(out))


def test_tta_votes_as_predict_tta_and_refuses_too_many_versions(model, puzzles):
    from fastapi.testclient import TestClient

    from hrmkit.eval.tta import MAX_TTA_VERSIONS

    with TestClient(serve.create_app(model)) as c:
        r = c.post("/v1/solve", json={"input": puzzles[0], "tta": 4, "segments": 2})
        assert r.status_code == 200, r.text
        voted = model.predict_tta(model.encode(puzzles[0])[None], 4, segments=2)
        body = r.json()
        assert body["answer"] == model.decode(voted.tokens[0].numpy()) and body["versions"] == 4
        assert sum(v["votes"] for v in body["votes"]) == 4 and body["segments_run"] == 2
        r = c.post("/v1/solve", json={"input": puzzles[0], "tta": MAX_TTA_VERSIONS + 1})
        assert r.status_code == 422 and r.json()["field"] == "tta"
        assert c.post("/v1/solve", json={"input": puzzles[0], "tta": 1}).status_code == 200


def test_verdict_accepts_solutions_and_refuses_near_misses(sudoku4):
    from hrmkit.data import maze

    split = load_split(sudoku4, "test").sets["all"]
    for x, y in zip(np.asarray(split.inputs[:20]), np.asarray(split.labels[:20])):
        assert serve.verdict("sudoku", x, y) is True
        wrong = y.copy()
        k = int(np.argmax(x != 1))  # a clue: changing it breaks the solution and the clue
        wrong[k] = 2 + (int(wrong[k]) - 1) % 4
        assert serve.verdict("sudoku", x, wrong) is False
        assert serve.verdict("sudoku", x, x) is False  # the puzzle itself is incomplete
    grid = maze_task.parse_maze(MAZE)
    path = grid.copy()
    for r, c in [(1, 2), (1, 3), (1, 4), (1, 5), (2, 5), (3, 5), (3, 4), (3, 3), (3, 2), (3, 1), (4, 1), (5, 1),
                 (5, 2), (5, 3), (5, 4)]:
        path[r, c] = maze.PATH
    tokens = lambda g: maze.to_tokens(g).reshape(-1)
    assert serve.verdict("maze", tokens(grid), tokens(path)) is True
    assert serve.verdict("maze", tokens(grid), tokens(grid)) is False
    path[3, 3] = maze.OPEN  # a gap in the path
    assert serve.verdict("maze", tokens(grid), tokens(path)) is False
    assert serve.verdict("arc", np.zeros(900), np.zeros(900)) is None  # no rules to check a grid against


def test_maze_as_text_or_lines_with_its_verdict(maze_checkpoint):
    from fastapi.testclient import TestClient

    from hrmkit.tasks import arc as arc_task, maze as maze_task, sudoku as sudoku_task

    model = hrmkit.load(maze_checkpoint)
    with TestClient(serve.create_app(model)) as c:
        a = c.post("/v1/solve", json={"input": MAZE, "trace": True}).json()
        b = c.post("/v1/solve", json={"input": MAZE.strip("\n").split("\n")}).json()
        assert a["answer"] == b["answer"] and len(a["trace"]) == 3
        answer = np.frombuffer(a["answer"].replace("\n", "").encode(), np.uint8).reshape(7, 7)
        check = maze_task.check_maze(maze_task.parse_maze(MAZE), answer)
        assert a["valid"] == (check.connected and check.only_path_added)
        r = c.post("/v1/solve", json={"input": MAZE.replace("#S    #", "#S  x #")})
        assert r.status_code == 422 and "character 'x'" in r.json()["error"]


def test_arc_task_is_voted_as_hrm_solve_does_and_a_lone_grid_has_no_verifier(arc_setup):
    from fastapi.testclient import TestClient

    from hrmkit.tasks import arc as arc_task, maze as maze_task, sudoku as sudoku_task
    from hrmkit.deploy.solve import solve_arc

    _, ckpt = arc_setup
    model = hrmkit.load(ckpt)
    with TestClient(serve.create_app(model)) as c:
        r = c.post("/v1/solve", json={"input": TASK, "task_id": "aa01"})
        assert r.status_code == 200, r.text
        body = r.json()
        want = solve_arc(model, arc_task.parse_arc_task(TASK, "aa01"), model.halt_max_steps)
        top = want.tests[0].answers[0]
        assert body["versions"] == 6 and body["answer"] == [top.grid.tolist()] and body["valid"] == top.correct
        grid = c.post("/v1/solve", json={"input": TASK["test"][0]["input"], "trace": True}).json()
        assert grid["valid"] is None and len(grid["trace"]) == model.halt_max_steps
        for body, field, needle in [
            ({"input": TASK}, "task_id", "needs its id"),
            ({"input": TASK, "task_id": "zz99"}, "input", "not one of the tasks"),
            ({"input": {**TASK, "test": [{"input": [[1, 2], [3]]}]}, "task_id": "aa01"}, "input", "ragged"),
            ({"input": [[1, 2], [3]]}, "input", "a grid is a rectangle"),
            ({"input": [[1, 12]]}, "input", "colour 12"),
        ]:
            r = c.post("/v1/solve", json=body)
            assert r.status_code == 422 and r.json()["field"] == field and needle in r.json()["error"], r.text


@pytest.mark.parametrize("args, needle", [
    (["--host", "0.0.0.0"], "not a loopback address, and no --token-file"),
    (["--token-file", "{empty}"], "the file is empty"),
    (["--token-file", "{missing}"], "cannot read it"),
    (["--max-batch", "0"], "--max-batch must be >= 1"),
    (["--max-segments", "513"], "--max-segments must be <= 512"),
    (["--port", "{busy}"], "cannot listen there"),
])
def test_serve_refuses_bad_options_with_exit_2(args, needle, tmp_path, capsys):
    (tmp_path / "empty").write_text("  \n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.format(empty=tmp_path / "empty", missing=tmp_path / "nope", busy=busy.getsockname()[1]) for a in args]
        assert hrm(["serve", "--checkpoint", str(tmp_path / "no-model"), *args]) == 2
    assert needle in capsys.readouterr().err


# ------------------------------------------------------------------------------- the playground, in a browser

@pytest.mark.skipif(CHROMIUM is None, reason="no chromium at /usr/bin/chromium")
def test_playground_solves_a_typed_sudoku_segment_by_segment(server, puzzles, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("HRMKIT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 620})
        page.goto(server.url + f"/?token={TOKEN}")  # the token once in the address, then a cookie
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        assert "sudoku 4x4" in page.inner_text("#model") and "token" not in page.url
        page.click("#clear")
        puzzle = puzzles[3]
        for k, ch in enumerate(puzzle):  # type the puzzle cell by cell, as a person would
            if ch != ".":
                page.fill(f"#sudoku-grid input[data-r='{k // 4}'][data-c='{k % 4}']", ch)
        page.screenshot(path=str(shots / "playground-typed.png"))
        page.click("#solve")
        page.wait_for_selector("#segment-label[data-segment='1']", timeout=30000)
        page.screenshot(path=str(shots / "playground-segment1.png"))
        page.wait_for_function("document.getElementById('verdict').dataset.valid !== undefined", timeout=30000)
        page.screenshot(path=str(shots / "playground-done.png"))
        assert page.inner_text("#segment-label") == "segment 3/3"
        cells = page.eval_on_selector_all("#answer-grid td", "tds => tds.map(td => td.textContent)")
        browser.close()
    expected = post(server, "/v1/solve", json={"input": puzzle}).json()
    assert "".join(c or "." for c in cells) == expected["answer"]
    assert (shots / "playground-done.png").stat().st_size > 1000


# ------------------------------------------------------------------------- token, then SIGTERM (keep these last)

def _gauge(server, name):
    text = get(server, "/metrics").text
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)), 0.0)


def test_token_401_without_or_with_a_wrong_one_200_with_the_right_one(server, puzzles):
    url = server.url + "/v1/model"
    assert httpx.get(server.url + "/healthz").status_code == 200  # probes need no token
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer " + TOKEN[:-1]}).status_code == 401
    assert httpx.get(url, headers=AUTH).status_code == 200
    r = httpx.post(server.url + "/v1/solve", json={"input": puzzles[0]})
    assert r.status_code == 401 and r.json()["field"] == "authorization" and r.headers["WWW-Authenticate"] == "Bearer"
    assert httpx.get(server.url + "/metrics").status_code == 401 and httpx.get(server.url + "/").status_code == 401
    assert httpx.get(server.url + "/docs").status_code == 401
    page = httpx.get(server.url + f"/?token={TOKEN}")  # a browser: the token once in the address, then a cookie
    assert page.status_code == 200 and page.cookies.get(serve.TOKEN_COOKIE) == TOKEN
    assert httpx.get(url, cookies={serve.TOKEN_COOKIE: TOKEN}).status_code == 200
    assert httpx.get(url, cookies={serve.TOKEN_COOKIE: "wrong"}).status_code == 401


def test_sigterm_finishes_requests_in_flight_and_exits_0_within_10_s(server, puzzles):
    in_flight = 'hrmkit_requests_in_flight{route="/v1/solve"}'
    with ThreadPoolExecutor(8) as pool:
        # Requests long enough to be in flight when SIGTERM comes (about 2.5 s of model time per batch on this
        # machine, measured from the server's own batch timing), short enough to finish in the grace period.
        before = (_gauge(server, "hrmkit_batch_seconds_sum"), _gauge(server, "hrmkit_batch_seconds_count"))
        list(pool.map(lambda p: post(server, "/v1/solve", json={"input": p, "segments": 20}), puzzles[:8]))
        per_batch = ((_gauge(server, "hrmkit_batch_seconds_sum") - before[0])
                     / max(1.0, _gauge(server, "hrmkit_batch_seconds_count") - before[1]))
        segments = int(min(512, max(20, 20 * 2.5 / max(per_batch, 1e-3))))
        for _ in range(3):  # a machine much faster than the calibration suggested: try longer requests
            futures = [pool.submit(post, server, "/v1/solve", json={"input": p, "segments": segments})
                       for p in puzzles[:8]]
            deadline = time.monotonic() + 30
            while True:  # every request has reached the server (in flight or answered)
                waiting = _gauge(server, in_flight)
                if waiting + sum(f.done() for f in futures) >= 8:
                    break
                assert time.monotonic() < deadline, server.log()
            if waiting >= 1:
                break
            segments = min(512, segments * 4)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        rc = server.proc.wait(10)
        took = time.monotonic() - t0
        answers = [f.result() for f in futures]
    assert waiting >= 1, "no request was in flight when SIGTERM came"
    assert rc == 0 and took < 10, server.log()
    assert [a.status_code for a in answers] == [200] * 8 and {a.json()["segments_run"] for a in answers} == {segments}
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/healthz", timeout=5)
