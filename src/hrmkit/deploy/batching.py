"""Dynamic batching for `hrm serve`: concurrent requests share one forward pass.

`MicroBatcher` holds a bounded asyncio queue of `Job`s. One task takes the first waiting job, gathers more
until `max_batch` jobs are in hand or `max_wait_ms` have passed since the first was taken, and hands the batch
to `run_model` in a single worker thread, so the event loop keeps accepting (and refusing) requests while the
model runs, and the model never runs two batches at once (PyTorch already spreads one batch over the CPU
cores). Past `max_queue` waiting jobs, `submit` raises `Overloaded` at once: the server answers 503 with
Retry-After instead of buffering without bound. `max_batch=1` turns batching off (every request its own pass).

`run_model` is the one place that calls the model for a batch: how `segments` reach `Model.predict` is
decided there and nowhere else. A request with test-time augmentation (`tta` > 1) is already a batch of its
own (its versions) and runs alone through `Model.predict_tta` (`run_exclusive`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


class Overloaded(Exception):
    """The batcher's queue is full (or it is shutting down); `retry_after_s` is a hint for the client."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    """One puzzle to run: tokens int [seq_len], its puzzle identifier, ACT segments to run (>= 1)."""

    tokens: np.ndarray
    puzzle_id: int
    segments: int
    future: asyncio.Future | None = None
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class RowResult:
    """One job's answer after `segments` ACT segments (S = seq_len).

    tokens: int64 [S], the argmax after the last segment run; segment_tokens: int64 [segments, S], the argmax
    after every segment; q_halt, q_continue: the halting logits per segment (q_continue None without that
    head); halted_at: the first segment (1-based) after which the halting rule said stop, `segments` when it
    never did (the rule of `eval.rollout.rollout`)."""

    tokens: np.ndarray
    segment_tokens: np.ndarray
    q_halt: list[float]
    q_continue: list[float] | None
    halted_at: int


def run_model(model: Any, jobs: Sequence[Job]) -> list[RowResult]:
    """Run one batch of jobs through `model` (an `hrmkit.deploy.api.Model`) in one `predict` call.

    Jobs may ask for different segment counts: the batch runs the largest count with every segment kept, and
    each job reads the prediction after its own count. In evaluation mode the carry after segment n does not
    depend on how many segments follow, so this equals `predict(segments=n)` row by row (tests/test_serve.py
    checks it). Raises whatever `Model.predict` raises (HrmkitError for a bad row, which the server has
    already ruled out by encoding the input)."""
    from hrmkit.halting import first_halt_step, halting_decisions

    x = np.stack([j.tokens for j in jobs]).astype(np.int64)
    ids = np.array([j.puzzle_id for j in jobs], np.int64)
    pred = model.predict(x, ids, segments=max(j.segments for j in jobs), keep_segments=True, batch_size=len(jobs))
    q_halt = pred.q_halt.numpy()
    q_cont = None if pred.q_continue is None else pred.q_continue.numpy()
    out = []
    for r, job in enumerate(jobs):
        n = job.segments
        qc = None if q_cont is None else q_cont[r, :n]
        halted_at = int(first_halt_step(halting_decisions(q_halt[r:r + 1, :n], None if qc is None else qc[None]))[0])
        seg = pred.segment_tokens[r, :n].numpy()
        out.append(RowResult(seg[-1], seg, q_halt[r, :n].tolist(), None if qc is None else qc.tolist(), halted_at))
    return out


class MicroBatcher:
    """Collects `Job`s from concurrent requests into batches for `runner` (module docstring).

    runner: jobs -> one result per job, called in the worker thread. max_batch >= 1; max_wait_ms >= 0: how
    long the first job of a batch waits for company; max_queue >= 1: jobs allowed to wait. on_batch(size,
    seconds) and on_queue(depth) feed the metrics. Use `start()` inside the running loop and `stop()` to
    finish every queued job and end the worker."""

    def __init__(self, runner: Callable[[Sequence[Job]], list[Any]], max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 256, on_batch: Callable[[int, float], None] | None = None,
                 on_queue: Callable[[int], None] | None = None):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch {max_batch} and max_queue {max_queue} must be >= 1, max_wait_ms "
                             f"{max_wait_ms} >= 0")
        self.runner, self.max_batch, self.max_wait = runner, max_batch, max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch, self.on_queue = on_batch or (lambda n, s: None), on_queue or (lambda d: None)
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hrmkit-model")

    @property
    def depth(self) -> int:
        """Jobs waiting (not yet in a running batch)."""
        return 0 if self._queue is None else self._queue.qsize()

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, job: Job) -> Any:
        """Queue `job` and wait for its result. Raises Overloaded at once when the queue is full or the
        batcher is stopping; re-raises what the runner raised for its batch."""
        if self._queue is None or self._closing:
            raise Overloaded("the server is shutting down", retry_after_s=5)
        job.future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"the queue is full ({self.max_queue} puzzles waiting)") from None
        self.on_queue(self._queue.qsize())
        return await job.future

    async def run_exclusive(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on the model thread, between batches (work that is not one row per job, such as
        voting over an ARC task's augmented versions). Raises Overloaded while the batcher is stopping."""
        if self._closing:
            raise Overloaded("the server is shutting down", retry_after_s=5)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _gather(self) -> list[Job]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        self.on_queue(self._queue.qsize())
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if batch[0] is _STOP:
                return
            stop = any(j is _STOP for j in batch)
            batch = [j for j in batch if j is not _STOP]
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.runner, batch)
            except Exception as e:  # noqa: BLE001 - the error belongs to the requests of this batch
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(e)
            else:
                for j, r in zip(batch, results):
                    if not j.future.done():  # a client that went away cancelled its future
                        j.future.set_result(r)
            self.on_batch(len(batch), time.perf_counter() - t0)
            if stop:
                return

    @property
    def busy(self) -> bool:
        """A batch is still running on the model thread (after `stop` timed out)."""
        return self._task is not None and not self._task.done()

    async def stop(self, timeout_s: float | None = None) -> bool:
        """Refuse new jobs, run every job already queued, then end the worker thread. With `timeout_s`, give up
        waiting after that long: jobs not yet answered get Overloaded, and the batch on the model thread is
        left to finish (`busy`). Returns True when everything queued was answered."""
        self._closing = True
        if self._task is None or self._queue is None or self._task.done():
            self._executor.shutdown(wait=False)
            return True
        try:
            self._queue.put_nowait(_STOP)
        except asyncio.QueueFull:  # the worker frees a slot as soon as it takes the next batch
            asyncio.get_running_loop().create_task(self._queue.put(_STOP))
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except asyncio.TimeoutError:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if job is not _STOP and not job.future.done():
                    job.future.set_exception(Overloaded("the server stopped before this puzzle ran", 5))
            self._executor.shutdown(wait=False, cancel_futures=True)
            return False
        self._executor.shutdown(wait=True)
        return True


_STOP: Any = Job(np.zeros(0, np.int64), 0, 0)
