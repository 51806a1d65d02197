"""CUDA correctness (`pytest -m cuda`, run by benchmarks/gpu_check.sh): the GPU computes what the CPU computes.
Every test skips where torch sees no CUDA device, so the CPU-only CI collects and skips them."""

from __future__ import annotations

import copy

import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.eval.rollout import rollout
from hrmkit.models import build_model, compile_model, forward_dtype
from test_speed import FAMILIES, NIDS, S, V, batch, rel, train_step

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def _no_tf32():
    # TF32 matmuls differ from float32 at 1e-3: the CPU comparison below is about float32 itself.
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_training_step_on_cuda_matches_cpu(family):
    """One float32 training step from the same weights and batch: loss within 1e-4 and gradient within 1e-3
    relative of the CPU's (the kernels sum in other orders, nothing more)."""
    torch.manual_seed(0)
    cpu = build_model(FAMILIES[family], seq_len=S, vocab_size=V, num_puzzle_identifiers=NIDS)
    gpu = copy.deepcopy(cpu).cuda()
    loss_c, grad_c, _ = train_step(cpu, batch(16))
    loss_g, grad_g, _ = train_step(gpu, batch(16, device="cuda"))
    assert rel(loss_g.cpu(), loss_c) < 1e-4 and rel(grad_g.cpu(), grad_c) < 1e-3


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_eval_rollout_on_cuda_predicts_what_cpu_predicts(family):
    torch.manual_seed(0)
    cpu = build_model(FAMILIES[family], seq_len=S, vocab_size=V, num_puzzle_identifiers=NIDS).eval()
    gpu = copy.deepcopy(cpu).cuda()
    rc, rg = rollout(cpu, batch(64)), rollout(gpu, batch(64, device="cuda"))
    assert rc.segments == rg.segments
    assert rel(rg.outputs["logits"].float().cpu(), rc.outputs["logits"].float()) < 1e-4
    agree = (rg.outputs["preds"].cpu() == rc.outputs["preds"]).float().mean()
    assert agree > 0.999


@pytest.mark.parametrize("family", ["hrm", "trm-attn"])
def test_bf16_step_on_cuda_stays_with_float32(family):
    torch.manual_seed(0)
    ref = build_model(FAMILIES[family], seq_len=S, vocab_size=V, num_puzzle_identifiers=NIDS).cuda()
    b = batch(32, device="cuda")
    loss32, grad32, _ = train_step(copy.deepcopy(ref), b)
    bf = copy.deepcopy(ref)
    with forward_dtype(bf, "bfloat16"):
        loss16, grad16, out16 = train_step(bf, b)
    assert out16["logits"].dtype == torch.bfloat16
    assert abs(float(loss16) - float(loss32)) / abs(float(loss32)) < 1e-2 and rel(grad16, grad32) < 2e-2


def test_compiled_segment_on_cuda_matches_eager():
    torch.manual_seed(0)
    eager = build_model(FAMILIES["hrm"], seq_len=S, vocab_size=V, num_puzzle_identifiers=NIDS).cuda()
    compiled = compile_model(copy.deepcopy(eager))
    b = batch(device="cuda")
    loss_e, grad_e, _ = train_step(eager, b)
    loss_c, grad_c, _ = train_step(compiled, b)
    assert rel(loss_c, loss_e) < 1e-5 and rel(grad_c, grad_e) < 1e-4


def test_hrm_train_on_cuda_writes_a_checkpoint_the_cpu_loads(sudoku4, tmp_path):
    """A few steps of `hrm train device=cuda`, then `hrm eval` of the run on the CPU."""
    from conftest import TINY_ARCH

    assert hrm(["train", "--preset", "demo-4x4", *TINY_ARCH, f"data_path={sudoku4}", f"out_dir={tmp_path}",
                "max_steps=6", "checkpoint_every=6", "device=cuda"]) == 0
    run = next(tmp_path.iterdir())
    assert hrm(["eval", str(run), "--device", "cpu", "--max-examples", "16"]) == 0
