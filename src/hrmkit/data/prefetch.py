"""Batches prepared ahead of the training step: drawn from the sampler in a background thread and, on CUDA,
already copied to the device when the step asks for them."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

import torch

_END = object()


def _map_tensors(item: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(item, torch.Tensor):
        return fn(item)
    if isinstance(item, dict):
        return {k: _map_tensors(v, fn) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return type(item)(_map_tensors(v, fn) for v in item)
    return item


class DevicePrefetcher:
    """Iterate `source` with the next `depth` items prepared by a background thread.

    Items are tensors or (nested) tuples, lists and dicts of them; other values pass through. On a CUDA
    `device` the producer pins each tensor and copies it with non_blocking=True on its own stream, and the
    consumer's stream waits on that copy through an event: neither the sampling nor the copy makes the host
    wait in the training step. On CPU the tensors are returned as drawn (the sampling still overlaps the step).

    `state`: optional callable (e.g. `TrainSampler.state_dict`), called by the producer right after it draws
    an item; `state_dict()` returns the value recorded with the last item returned (before any: the value at
    construction), i.e. the position of the next batch the consumer will get, so that a checkpoint resumes
    exactly even though the source ran ahead. Do not call the source's own state while the prefetcher runs.
    An exception raised by the source is re-raised by `next()`. `close()` (or leaving a `with` block) stops
    the thread. Raises ValueError for depth < 1.
    """

    def __init__(self, source: Iterable, device: torch.device | str, depth: int = 2,
                 state: Callable[[], Any] | None = None):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self._cuda else None
        self._state_fn = state
        self._state = state() if state is not None else None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(source),), daemon=True,
                                        name="hrmkit-prefetch")
        self._thread.start()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, it) -> None:
        try:
            for item in it:
                state = self._state_fn() if self._state_fn is not None else None
                event = None
                if self._cuda:
                    with torch.cuda.stream(self._stream):
                        item = _map_tensors(item, lambda t: t.pin_memory().to(self.device, non_blocking=True))
                        event = torch.cuda.Event()
                        event.record(self._stream)
                if not self._put((item, state, event)):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the consumer
            self._put(e)

    def __iter__(self) -> "DevicePrefetcher":
        return self

    def __next__(self) -> Any:
        entry = self._queue.get()
        if entry is _END:
            self._queue.put(_END)  # stay exhausted
            raise StopIteration
        if isinstance(entry, BaseException):
            raise entry
        item, state, event = entry
        if event is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(event)
            _map_tensors(item, lambda t: t.record_stream(stream))  # memory made on the side stream, used here
        self._state = state
        return item

    def state_dict(self) -> Any:
        """The `state()` value recorded with the last item returned (see the class docstring)."""
        return self._state

    def close(self) -> None:
        """Stop the producer thread (items already prepared are dropped)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "DevicePrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
