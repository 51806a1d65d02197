"""The training loop (reference semantics, sapientinc/HRM pretrain.py) with resume, signals and a heartbeat.

One optimizer step is one ACT segment: the carry is kept across steps and only halted rows take new data
from the next batch (DESIGN.md §3). The optimizer sees loss / global_batch_size.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from hrmkit.config import TrainConfig
from hrmkit.data.format import load_split
from hrmkit.data.sampler import TrainSampler
from hrmkit.errors import HrmkitError
from hrmkit.eval.evaluate import evaluate_split
from hrmkit.fsutil import atomic_write_bytes
from hrmkit.models import build_model, build_optimizers, carry_from_state, carry_to_state, count_parameters
from hrmkit.models.ema import EMA
from hrmkit.train import checkpoint as ckpt
from hrmkit.train.schedule import cosine_with_warmup
from hrmkit.train.status import StatusFile, new_run_id


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU. Raises HrmkitError for `cuda` on a machine without one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise HrmkitError("device=cuda: no CUDA device is available (use device=cpu or device=auto)")
    return torch.device(name)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--:--"
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes its step, checkpoints and exits cleanly."""

    signum: int | None = None
    previous: dict = field(default_factory=dict)

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: give up waiting
            raise KeyboardInterrupt
        self.signum = signum
        print(f"received {signal.Signals(signum).name}: finishing this step, then checkpointing", flush=True)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _ensure_data(cfg: TrainConfig) -> None:
    """Build the demo dataset when `data_path` is missing and the config says how."""
    path = Path(cfg.data_path)
    if (path / "train").is_dir():
        return
    if cfg.demo_data is None:
        raise HrmkitError(f"data_path={cfg.data_path!r}: no dataset there (expected {path}/train); build one with `hrm data ...`")
    from hrmkit.cli import main as cli_main

    d = cfg.demo_data
    print(f"building the demo dataset in {path} ({d.size}x{d.size} Sudoku, {d.train} train / {d.test} test)", flush=True)
    rc = cli_main(["data", "sudoku", "--out", str(path), "--size", str(d.size), "--train", str(d.train),
                   "--test", str(d.test), "--seed", str(d.seed), "--num-aug", str(d.num_aug)])
    if rc != 0:
        raise HrmkitError(f"building the demo dataset in {path} failed (exit {rc})")


def train(cfg: TrainConfig, resume_dir: str | None = None) -> Path:
    """Train per `cfg`; with `resume_dir`, continue that run from its newest valid checkpoint.

    Returns the run folder. Writes `config.yaml`, `metrics.jsonl`, `status.json`, `checkpoints/`.
    Raises HrmkitError for bad data, config or run folders.
    """
    _ensure_data(cfg)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    train_split = load_split(Path(cfg.data_path), "train")
    meta = train_split.metadata
    sampler = TrainSampler(train_split, cfg.global_batch_size, seed=cfg.seed)
    steps_per_epoch = sampler.batches_per_epoch
    if steps_per_epoch == 0:
        raise HrmkitError(f"{cfg.data_path}: fewer training examples than global_batch_size={cfg.global_batch_size}")
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    eval_every = cfg.eval_interval * steps_per_epoch if cfg.eval_interval else None

    model_shape = {"seq_len": meta.seq_len, "vocab_size": meta.vocab_size,
                   "num_puzzle_identifiers": meta.num_puzzle_identifiers}
    head = build_model(cfg.arch, **model_shape).to(device)
    optimizers = build_optimizers(head, lr=cfg.lr, puzzle_emb_lr=cfg.puzzle_emb_lr, weight_decay=cfg.weight_decay,
                                  puzzle_emb_weight_decay=cfg.puzzle_emb_weight_decay, betas=(cfg.beta1, cfg.beta2))
    base_lrs = [cfg.lr] + [cfg.puzzle_emb_lr] * (len(optimizers) - 1)
    ema = EMA(head, rate=cfg.ema_rate) if cfg.ema else None

    step, carry, best = 0, None, None
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        found = ckpt.latest_valid_checkpoint(run_dir)
        if found is None:
            raise HrmkitError(f"--resume {run_dir}: no valid checkpoint in {run_dir / 'checkpoints'}")
        path, state = found
        head.load_state_dict(state["model"])
        for opt, s in zip(optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        sampler.load_state_dict(state["sampler"])
        carry = carry_from_state({k: v.to(device) for k, v in state["carry"].items()}) if state.get("carry") else None
        ckpt.set_rng_state(state["rng"])
        step, best = state["step"], state.get("best")
        run_id = json.loads((run_dir / "status.json").read_text())["run_id"] if (run_dir / "status.json").exists() else run_dir.name
        print(f"resuming {run_id} from {path} (global step {step})", flush=True)
    else:
        run_id = new_run_id()
        run_dir = Path(cfg.out_dir) / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False).encode())

    n_params = count_parameters(head)
    status = StatusFile(run_dir, run_id, total_steps)
    status.update(state="running", global_step=step, best=best, epoch=step // steps_per_epoch)
    print(f"run {run_id}: {cfg.arch.name} with {n_params:,} parameters on {device}; "
          f"{steps_per_epoch} steps/epoch, {total_steps} steps; folder {run_dir}", flush=True)

    metrics_file = open(run_dir / "metrics.jsonl", "a", buffering=1)
    stop = _StopFlag()
    stop.install()
    window: collections.deque = collections.deque(maxlen=20)  # (time, step) for the sliding-window ETA
    t_start = time.time()
    train_time = 0.0
    last_path: Path | None = None
    accum: dict[str, float] = collections.defaultdict(float)

    def save(state_name: str) -> Path:
        nonlocal last_path
        state = {
            "model": head.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
            "ema": ema.state_dict() if ema is not None else None, "sampler": sampler.state_dict(),
            "carry": carry_to_state(carry) if carry is not None else None, "rng": ckpt.rng_state(),
            "step": step, "best": best, "config": json.dumps(cfg.model_dump()), "model_shape": model_shape,
        }
        last_path = ckpt.save_checkpoint(run_dir, step, state, keep=cfg.keep_checkpoints)
        status.update(state=state_name, global_step=step, last_checkpoint=str(last_path))
        return last_path

    def run_eval() -> dict[str, Any]:
        nonlocal best
        test_split = load_split(Path(cfg.data_path), "test")
        with (ema.swapped() if ema is not None else contextlib.nullcontext()):
            result = evaluate_split(head, test_split, batch_size=cfg.eval_batch_size or cfg.global_batch_size,
                                    device=device, max_examples=cfg.eval_max_examples)
        summary = result["summary"]
        record = {"run_id": run_id, "global_step": step, "kind": "eval", **{f"eval/{k}": v for k, v in summary.items()
                                                                           if isinstance(v, (int, float))}}
        metrics_file.write(json.dumps(record) + "\n")
        if best is None or summary["exact_accuracy"] > best["value"]:
            best = {"metric": "exact_accuracy", "value": summary["exact_accuracy"], "step": step}
        status.update(last_eval={"step": step, "metrics": summary}, best=best)
        print(f"[{run_id}] eval step {step}: exact {summary['exact_accuracy']:.4f} token {summary['token_accuracy']:.4f} "
              f"on {summary['num_examples']} examples (copy-input baseline exact "
              f"{result['baselines']['copy_input']['exact_accuracy']:.4f})", flush=True)
        return summary

    data_iter = iter(sampler)
    head.train()
    try:
        while step < total_steps and stop.signum is None:
            if cfg.max_time_s is not None and train_time >= cfg.max_time_s:
                print(f"[{run_id}] max_time_s={cfg.max_time_s} reached at step {step}", flush=True)
                break
            t0 = time.time()
            epoch, epoch_step, batch = next(data_iter)
            batch = _to_device(batch, device)
            if carry is None:
                carry = head.initial_carry(batch)
            carry, loss, metrics, _, _ = head(carry, batch)
            (loss / cfg.global_batch_size).backward()
            if cfg.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip_norm)
            for opt, base in zip(optimizers, base_lrs):
                lr = cosine_with_warmup(step, base, cfg.lr_warmup_steps, total_steps, cfg.lr_min_ratio)
                for g in opt.param_groups:
                    g["lr"] = lr
                opt.step()
                opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update()
            step += 1
            train_time += time.time() - t0
            for k, v in metrics.items():
                accum[k] += float(v)
            accum["loss"] += float(loss.detach()) / cfg.global_batch_size
            accum["n"] += 1

            if step % cfg.log_every == 0 or step == total_steps:
                now = time.time()
                window.append((now, step))
                rate = None
                if len(window) >= 2 and window[-1][0] > window[0][0]:
                    rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
                else:
                    rate = step / max(1e-9, train_time)
                eta = (total_steps - step) / rate if rate else None
                count = max(accum["count"], 1.0)
                rec = {
                    "run_id": run_id, "global_step": step, "epoch": epoch, "epoch_step": epoch_step,
                    "wall_time": now - t_start, "samples_per_s": rate * cfg.global_batch_size, "lr": optimizers[0].param_groups[0]["lr"],
                    "loss": accum["loss"] / accum["n"], "lm_loss": accum["lm_loss"] / count,
                    "accuracy": accum["accuracy"] / count, "exact_accuracy": accum["exact_accuracy"] / count,
                    "q_halt_accuracy": accum["q_halt_accuracy"] / count, "steps": accum["steps"] / count,
                    "eta_s": eta,
                }
                metrics_file.write(json.dumps(rec) + "\n")
                print(f"[{run_id}] step {step}/{total_steps} epoch {epoch} ({epoch_step}/{steps_per_epoch}) "
                      f"wall {_fmt_time(rec['wall_time'])} {rec['samples_per_s']:.0f} samples/s loss {rec['loss']:.4f} "
                      f"acc {rec['accuracy']:.3f} exact {rec['exact_accuracy']:.3f} ETA {_fmt_time(eta)}", flush=True)
                status.update(global_step=step, epoch=epoch, samples_per_s=rec["samples_per_s"], eta_s=eta)
                accum.clear()
            if eval_every and step % eval_every == 0 and step < total_steps:
                run_eval()
                head.train()
            if step % cfg.checkpoint_every == 0 and step < total_steps:
                save("running")
    finally:
        stop.restore()

    interrupted = stop.signum is not None
    if interrupted:
        path = save("interrupted")
        print(f"[{run_id}] interrupted at step {step}; checkpoint {path}; resume with: hrm train --resume {run_dir}", flush=True)
    else:
        run_eval()
        save("finished")
        print(f"[{run_id}] finished at step {step}; run folder {run_dir}", flush=True)
    metrics_file.close()
    return run_dir
