"""Whole training loops side by side: the CPU demo recipe in hrmkit's `train()` against the TinyRecursiveModels
reference's own `pretrain.py` loop (`create_dataloader`, `init_train_state`, `train_batch`), on the same dataset
folder. Used by `bench_reference.py --configs demo`.

Each side runs in its own process (the references name their package `models`; the reference loop needs its
CUDA calls shimmed, see `_reference_side`) and the sides take turns through a token: each runs its `warmup`
steps alone, then rounds of `round_steps` steps, timed on the wall clock from receiving the token to the end of
the round's last step, the order fixed (reference, hrmkit, hrmkit compile, reference, ...). A side's figure is
the median of its rounds; every step of a side is its loop's real step (data, forward, backward, optimizers,
learning-rate schedule, metrics, and for hrmkit its guards and logging), none copied here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

TOKEN_TIMEOUT_S = 1800


class Turns:
    """The token: side i waits for its event, runs, then hands the token to side i + 1 (cyclically)."""

    def __init__(self, events, index: int, done):
        self.events, self.i, self.done = events, index, done

    def wait(self) -> None:
        if not self.events[self.i].wait(TOKEN_TIMEOUT_S):
            raise TimeoutError("no turn in 30 minutes: another side died")
        self.events[self.i].clear()

    def hand_on(self) -> None:
        self.events[(self.i + 1) % len(self.events)].set()


class Rounds:
    """Counts a side's steps and, at round boundaries, records the round's time and takes turns."""

    def __init__(self, turns: Turns, warmup: int, steps: int, round_steps: int, results, label: str):
        self.turns, self.warmup, self.end, self.R = turns, warmup, warmup + steps, round_steps
        self.results, self.label = results, label
        self.times: list[float] = []
        self.start = self.t0 = self.warmup_s = 0.0

    def begin(self) -> None:
        self.turns.wait()
        self.start = time.perf_counter()

    def after_step(self, step: int) -> bool:
        """Call after global step `step` (1-based); True once the side has run all its steps."""
        if step < self.warmup or (step - self.warmup) % self.R:
            return False
        now = time.perf_counter()
        if step == self.warmup:
            self.warmup_s = now - self.start
        else:
            self.times.append((now - self.t0) / self.R)
        if step >= self.end:
            self.results.put({"label": self.label, "step_s": self.times, "warmup_s": self.warmup_s})
            self.turns.hand_on()
            self.turns.done.wait(TOKEN_TIMEOUT_S)
            return True
        self.turns.hand_on()
        self.turns.wait()
        self.t0 = time.perf_counter()
        return False


def _hrmkit_side(rounds: Rounds, data: str, compile_: bool, total_steps: int) -> None:
    from hrmkit.presets import resolve_config
    from hrmkit.train.loop import train

    out = tempfile.mkdtemp(prefix="hrmkit-loop-")
    cfg = resolve_config("demo", overrides=[f"data_path={data}", f"max_steps={total_steps}", "checkpoint_every=100000",
                                            f"out_dir={out}", f"compile={str(compile_).lower()}", "max_time_s=null"])
    rounds.begin()
    train(cfg, on_step=lambda state: rounds.after_step(state.step))


class _CpuTorch(types.ModuleType):
    """`torch` as seen by the reference's pretrain.py: everything delegated, except that `torch.device("cuda")`
    (a context manager there) means the CPU."""

    def __init__(self, torch):
        super().__init__("torch")
        self._torch = torch

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def device(self, *args, **kwargs):
        return self._torch.device("cpu")


def _reference_side(rounds: Rounds, data: str, checkout: Path, compile_: bool, total_steps: int) -> None:
    """The reference's loop body (pretrain.py `launch`: `for set_name, batch, gbs in train_loader: train_batch(...)`,
    then `wandb.log`) with shims: `Tensor.cuda` and `torch.device("cuda")` stay on the CPU, wandb/hydra/coolname
    are inert modules, flash_attn and adam_atan2 as in bench_reference.py."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_reference import _install_shims

    _install_shims()
    for name in ("wandb", "coolname", "hydra", "omegaconf", "argdantic"):  # imported, unused in the loop
        sys.modules[name] = types.SimpleNamespace(log=lambda *a, **k: None, init=lambda *a, **k: None,
                                                  main=lambda *a, **k: (lambda f: f), DictConfig=dict,
                                                  generate_slug=lambda *a, **k: "bench", ArgParser=object)
    torch.Tensor.cuda = lambda self, *a, **k: self
    mp.set_start_method("fork", force=True)  # its DataLoader worker as on Linux by default (and keeps the shims)
    if not compile_:
        os.environ["DISABLE_COMPILE"] = "1"
    sys.path.insert(0, str(checkout))
    os.chdir(checkout)
    import pretrain

    pretrain.torch = _CpuTorch(torch)
    from hrmkit.presets import TRAIN_PRESETS

    demo = TRAIN_PRESETS["demo"]  # the same recipe, in the reference's config
    arch = dict(demo["arch"], name="recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                loss={"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}, forward_dtype="float32")
    epochs = 100000
    config = pretrain.PretrainConfig(
        arch=arch, data_paths=[data], global_batch_size=demo["global_batch_size"], epochs=epochs, lr=demo["lr"],
        lr_min_ratio=demo["lr_min_ratio"], lr_warmup_steps=demo["lr_warmup_steps"], weight_decay=demo["weight_decay"],
        beta1=0.9, beta2=0.95, puzzle_emb_lr=demo["lr"], puzzle_emb_weight_decay=demo["weight_decay"])
    torch.random.manual_seed(config.seed)
    loader, meta = pretrain.create_dataloader(config, "train", test_set_mode=False, epochs_per_iter=epochs,
                                              global_batch_size=config.global_batch_size, rank=0, world_size=1)
    state = pretrain.init_train_state(config, meta, rank=0, world_size=1)
    state.total_steps = total_steps
    rounds.begin()
    for _set_name, batch, gbs in loader:
        if state.carry is None:  # train_batch builds it under torch.device("cuda"); same call, on the CPU
            state.carry = state.model.initial_carry(batch)
        metrics = pretrain.train_batch(config, state, batch, gbs, rank=0, world_size=1)
        sys.modules["wandb"].log(metrics, step=state.step)
        if rounds.after_step(state.step):
            return


def _side_main(kind: str, label: str, index: int, events, done, results, args: dict) -> None:
    rounds = Rounds(Turns(events, index, done), args["warmup"], args["steps"], args["round_steps"], results, label)
    total = args["warmup"] + args["steps"]
    try:
        if kind == "reference":
            _reference_side(rounds, args["data"], args["checkout"], args["compile"], total)
        else:
            _hrmkit_side(rounds, args["data"], args["compile"], total)
    except BaseException as e:  # the parent reports it; the token moves on so no side waits for ever
        results.put({"label": label, "error": f"{type(e).__name__}: {e}"})
        Turns(events, index, done).hand_on()
        raise


def run_demo_loops(data: str, checkout: Path | None, sides: list[str], warmup: int, steps: int,
                   round_steps: int) -> dict[str, dict]:
    """Run the demo recipe's training loops in turns (module docstring). `sides` from "reference",
    "reference compile", "hrmkit", "hrmkit compile". Returns {label: {step_s (median s/step), steps_per_s,
    rounds (steps/s per round), warmup_s (s: the first `warmup` steps, compilation included)}}. Raises
    RuntimeError with a side's error when one fails."""
    ctx = mp.get_context("spawn")
    events, done, results = [ctx.Event() for _ in sides], ctx.Event(), ctx.Queue()
    procs = []
    for i, label in enumerate(sides):
        kind = "reference" if label.startswith("reference") else "hrmkit"
        args = dict(data=str(Path(data).resolve()), checkout=checkout, compile=label.endswith("compile"),
                    warmup=warmup, steps=steps, round_steps=round_steps)
        procs.append(ctx.Process(target=_side_main, args=(kind, label, i, events, done, results, args)))
    for p in procs:
        p.start()
    events[0].set()
    out: dict[str, dict] = {}
    failed = False
    try:
        for _ in sides:
            r = results.get(timeout=TOKEN_TIMEOUT_S)
            if "error" in r:
                failed = True
                raise RuntimeError(f"{r['label']}: {r['error']}")
            med = statistics.median(r["step_s"])
            out[r["label"]] = {"step_s": med, "steps_per_s": 1 / med, "rounds": [round(1 / t, 3) for t in r["step_s"]],
                               "warmup_s": r["warmup_s"]}
    finally:
        done.set()
        for p in procs:
            p.join(1 if failed else 120)
            if p.is_alive():
                p.terminate()
    return out
