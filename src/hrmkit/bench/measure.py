"""Measure one training config: train and eval throughput, peak memory, FLOPs and MFU against a matmul ceiling
measured on the same device in the same run."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from hrmkit.config import TrainConfig
from hrmkit.errors import HrmkitError


@dataclass
class Shape:
    """The data shape benchmarked: seq_len tokens, vocab_size tokens, num_puzzle_identifiers table rows, and
    where it came from ("dataset DIR" or "random")."""

    seq_len: int
    vocab_size: int
    num_puzzle_identifiers: int
    source: str


@dataclass
class BenchResult:
    """Everything `hrm bench` reports. Units: seconds, samples/s (rows x segments), segments/s (batch forward
    passes), puzzles/s (examples run through all halt_max_steps segments), FLOP and FLOP/s (multiply-add = 2),
    MiB. `mfu` = train_flops_per_s / ceiling_flops_per_s, `eval_mfu` likewise for evaluation."""

    model: str
    dtype: str
    compile: bool
    device: str
    threads: int
    batch_size: int
    eval_batch_size: int
    parameters: int
    shape: Shape
    warmup_s: float
    train_step_s: float
    train_samples_per_s: float
    train_segments_per_s: float
    eval_batch_s: float
    eval_puzzles_per_s: float
    train_flops_per_step: float
    train_flops_per_s: float
    eval_flops_per_puzzle: float
    eval_flops_per_s: float
    ceiling_flops_per_s: float
    ceiling: str
    mfu: float
    eval_mfu: float
    peak_memory_mb: float
    peak_memory_kind: str
    train_steps: int
    eval_batches: int
    machine: str = field(default_factory=lambda: machine_summary())
    torch_version: str = torch.__version__

    def to_dict(self) -> dict:
        return asdict(self)


def machine_summary() -> str:
    """CPU model (noting AMX / AVX-512 bf16 units), core count and Python version; the GPU's name when present."""
    cpu, flags = platform.processor() or platform.machine(), ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            info = f.read()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu)
        flags = " (AMX bf16)" if "amx_bf16" in info else " (AVX-512 bf16)" if "avx512_bf16" in info else ""
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}{flags}, {os.cpu_count()} cores{gpu}, Python {platform.python_version()}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """FLOP/s of an [n, n] @ [n, n] matmul in `dtype` on `device` (median of `repeats` after one warm-up): the
    practical peak the model's FLOP rate is compared with."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def random_batch(B: int, shape: Shape, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """A Sudoku-like batch of random tokens in [1, vocab) (0 is PAD in every hrmkit layout), int32."""
    V, S = max(shape.vocab_size, 2), shape.seq_len
    return {"inputs": torch.randint(1, V, (B, S), generator=gen, dtype=torch.int32).to(device),
            "labels": torch.randint(1, V, (B, S), generator=gen, dtype=torch.int32).to(device),
            "puzzle_identifiers": torch.randint(0, shape.num_puzzle_identifiers, (B,), generator=gen,
                                                dtype=torch.int32).to(device)}


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "GPU peak allocated"
    from hrmkit.train.status import memory_report

    return memory_report()["peak_cpu_rss_mb"], "peak RSS of the process"


def run_bench(cfg: TrainConfig, device: torch.device, shape: Shape, *, warmup_steps: int = 2, train_steps: int = 10,
                 eval_batches: int = 5, ceiling_n: int | None = None, seed: int = 0) -> BenchResult:
    """Benchmark `cfg`'s model on `device` with random batches of `shape`.

    Training: `warmup_steps` untimed steps (compilation with `compile: true` happens there), then
    `train_steps` timed steps of `train.step.bare_step` (`grad_accum_steps` segments, forward + backward, then
    every optimizer of `build_optimizers`; the ACT carry kept across steps: `hrm train`'s step without its
    all-reduce, guards, clipping, schedule and statistics). Evaluation: `eval_batches` timed rollouts (eval mode, halt_max_steps segments,
    inference mode) of `eval_batch_size` rows after one untimed one. Times are medians of single steps/batches.
    Raises HrmkitError for `global_batch_size: auto` (give a number).
    """
    from hrmkit.eval.rollout import rollout
    from hrmkit.models import build_model, build_optimizers, compile_model, count_parameters, flops_per_token
    from hrmkit.models.layers import resolve_dtype
    from hrmkit.train.step import bare_step

    if cfg.global_batch_size == "auto":
        raise HrmkitError("hrm bench: global_batch_size=auto is not supported; give a number, e.g. global_batch_size=768")
    B, k = int(cfg.global_batch_size), cfg.grad_accum_steps
    EB = int(cfg.eval_batch_size or B)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = build_model(cfg.arch, seq_len=shape.seq_len, vocab_size=shape.vocab_size,
                       num_puzzle_identifiers=shape.num_puzzle_identifiers).to(device)
    if cfg.compile:
        compile_model(head)
    opts = build_optimizers(head, cfg.lr, cfg.puzzle_emb_lr, cfg.weight_decay, cfg.puzzle_emb_weight_decay,
                            betas=(cfg.beta1, cfg.beta2))
    batches = [random_batch(B, shape, gen, device) for _ in range(4)]
    carry = None

    def train_step(i: int) -> None:
        nonlocal carry
        carry = bare_step(head, carry, [batches[(i * k + j) % len(batches)] for j in range(k)], opts)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    head.train()
    t0 = time.perf_counter()
    for i in range(warmup_steps):
        train_step(i)
    _sync(device)
    warmup = time.perf_counter() - t0
    step_times = []
    for i in range(train_steps):
        t = time.perf_counter()
        train_step(warmup_steps + i)
        _sync(device)
        step_times.append(time.perf_counter() - t)

    head.eval()
    eval_batch = random_batch(EB, shape, gen, device)
    eval_times = []
    for i in range(eval_batches + 1):
        _sync(device)
        t = time.perf_counter()
        rollout(head, eval_batch)
        _sync(device)
        if i:
            eval_times.append(time.perf_counter() - t)
    peak, peak_kind = _peak_memory(device)

    dtype = resolve_dtype(cfg.arch.forward_dtype, device)
    n = ceiling_n or (8192 if device.type == "cuda" else 2048)
    ceiling = matmul_ceiling(device, dtype, n)
    f = flops_per_token(cfg.arch, shape.seq_len, shape.vocab_size)
    step_s, eval_s = statistics.median(step_times), statistics.median(eval_times)
    train_flops = f["train"] * shape.seq_len * B * k
    eval_flops = f["forward"] * shape.seq_len * cfg.arch.halt_max_steps
    a = cfg.arch
    model = (f"{a.name} D{a.hidden_size} {a.H_layers}+{a.L_layers} layers {a.H_cycles}/{a.L_cycles} cycles"
             f"{' mlp_t' if a.name == 'trm' and a.mlp_t else ''} halt_max {a.halt_max_steps}")
    return BenchResult(
        model=model, dtype=str(dtype).replace("torch.", ""), compile=cfg.compile, device=str(device),
        threads=torch.get_num_threads(), batch_size=B, eval_batch_size=EB, parameters=count_parameters(head),
        shape=shape, warmup_s=warmup, train_step_s=step_s, train_samples_per_s=B * k / step_s,
        train_segments_per_s=k / step_s, eval_batch_s=eval_s, eval_puzzles_per_s=EB / eval_s,
        train_flops_per_step=train_flops, train_flops_per_s=train_flops / step_s, eval_flops_per_puzzle=eval_flops,
        eval_flops_per_s=eval_flops * EB / eval_s, ceiling_flops_per_s=ceiling,
        ceiling=f"{str(dtype).replace('torch.', '')} {n}x{n}x{n} matmul", mfu=train_flops / step_s / ceiling,
        eval_mfu=eval_flops * EB / eval_s / ceiling, peak_memory_mb=peak, peak_memory_kind=peak_kind,
        train_steps=train_steps, eval_batches=eval_batches)
