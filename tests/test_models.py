"""Model tests: shapes, ACT halting rules, sparse sign-SGD, losses, EMA, carry state, tiny training runs."""

from __future__ import annotations

import math

import pytest
import torch

from hrmkit.config import ArchConfig, LossConfig
from hrmkit.models import (
    SignSGDSparse, build_model, build_optimizers, carry_from_state, carry_to_state, count_parameters,
    puzzle_embedding_params,
)
from hrmkit.models.ema import EMA
from hrmkit.models.losses import softmax_cross_entropy, stablemax_cross_entropy
from hrmkit.models.puzzle_embedding import PuzzleEmbedding

S, V, NIDS = 8, 6, 5


def tiny(name="hrm", **kw) -> ArchConfig:
    base = dict(name=name, H_cycles=2, L_cycles=2, H_layers=1, L_layers=1, hidden_size=32, num_heads=2,
                expansion=2, halt_max_steps=3, halt_exploration_prob=0.0, puzzle_emb_ndim=32, puzzle_emb_len=2,
                forward_dtype="float32")
    base.update(kw)
    return ArchConfig(**base)


FAMILIES = {
    "hrm": tiny("hrm"),
    "trm-attn": tiny("trm", H_layers=0, L_layers=2),
    "trm-mlp": tiny("trm", H_layers=0, L_layers=2, mlp_t=True, pos_encodings="none"),
    "transformer": tiny("transformer", H_layers=1, L_layers=1, halt_max_steps=1),
}


def make_batch(B=4, seed=0, ignore_row=False):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, V, (B, S), generator=g, dtype=torch.int32)
    labels = (inputs + 1) % V
    labels[:, 0] = -100
    if ignore_row:
        labels[-1] = -100
    pids = torch.arange(B, dtype=torch.int32) % NIDS
    return {"inputs": inputs, "labels": labels.to(torch.int32), "puzzle_identifiers": pids}


def build(arch, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, seq_len=S, vocab_size=V, num_puzzle_identifiers=NIDS)


def set_q_bias(head, halt, cont):
    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor([halt, cont]))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shapes_and_outputs(family):
    arch = FAMILIES[family]
    head = build(arch)
    b = make_batch()
    head.train()
    carry = head.initial_carry(b)
    assert carry.halted.all() and carry.steps.dtype == torch.int32
    carry, loss, metrics, out, done = head(carry, b, return_keys=("inputs",))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert out["logits"].shape == (4, S, V) and out["preds"].shape == (4, S)
    assert out["q_halt_logits"].shape == (4,) and out["q_halt_logits"].dtype == torch.float32
    assert torch.equal(out["inputs"], b["inputs"])
    assert ("target_q_continue" in out) == (family == "hrm")
    assert set(metrics) >= {"count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss"}
    assert done.dtype == torch.bool
    P = head.model.inner.puzzle_len
    assert carry.inner_carry.z_H.shape == (4, S + P, 32)


def test_reference_state_dict_names():
    names = set(build(FAMILIES["hrm"]).state_dict())
    assert {"model.inner.H_level.layers.0.self_attn.qkv_proj.weight", "model.inner.embed_tokens.embedding_weight",
            "model.inner.lm_head.weight", "model.inner.q_head.weight", "model.inner.q_head.bias",
            "model.inner.H_init", "model.inner.L_init", "model.inner.puzzle_emb.weights",
            "model.inner.L_level.layers.0.mlp.gate_up_proj.weight"} <= names
    trm = set(build(FAMILIES["trm-mlp"]).state_dict())
    assert "model.inner.L_level.layers.1.mlp_t.gate_up_proj.weight" in trm
    learned = set(build(tiny(pos_encodings="learned")).state_dict())
    assert "model.inner.embed_pos.embedding_weight" in learned


def run_until_done(head, b, limit=50):
    carry = head.initial_carry(b)
    steps_seen = []
    for i in range(1, limit + 1):
        carry, _, _, _, done = head(carry, b)
        steps_seen.append(carry.halted.clone())
        if done:
            return i, carry, steps_seen
    raise AssertionError("never finished")


@pytest.mark.parametrize("family", ["hrm", "trm-attn"])
def test_eval_runs_exactly_halt_max_steps(family):
    head = build(FAMILIES[family]).eval()
    set_q_bias(head, 10.0, -10.0)  # would halt at once in training
    with torch.no_grad():
        n, carry, _ = run_until_done(head, make_batch())
    assert n == head.model.halt_max_steps and (carry.steps == n).all()


def test_training_halts_at_max_and_on_q():
    head = build(FAMILIES["hrm"]).train()
    b = make_batch()
    set_q_bias(head, -10.0, 10.0)  # q_halt < q_continue: only the step limit halts
    n, carry, hist = run_until_done(head, b)
    assert n == 3 and not hist[0].any() and not hist[1].any()
    set_q_bias(head, 10.0, -10.0)  # q_halt > q_continue: halt after one segment
    n, _, _ = run_until_done(head, b)
    assert n == 1
    trm = build(FAMILIES["trm-attn"]).train()
    set_q_bias(trm, 1.0, 10.0)  # no_ACT_continue: q_halt > 0 halts, q_continue ignored
    assert run_until_done(trm, b)[0] == 1
    set_q_bias(trm, -1.0, -10.0)
    assert run_until_done(trm, b)[0] == 3


def test_exploration_min_steps():
    head = build(tiny(halt_max_steps=6, halt_exploration_prob=1.0)).train()
    set_q_bias(head, 10.0, -10.0)  # would halt at step 1 without exploration
    torch.manual_seed(0)
    b = make_batch(B=16)
    carry = head.initial_carry(b)
    carry, *_ = head(carry, b)
    assert not carry.halted.any()  # minimum is >= 2
    for _ in range(5):
        carry, *_ = head(carry, b)
        assert (carry.steps[carry.halted] >= 2).all()
    assert carry.halted.any()


def test_only_halted_rows_take_new_data():
    head = build(FAMILIES["hrm"]).train()
    set_q_bias(head, -10.0, 10.0)
    b1, b2 = make_batch(seed=1), make_batch(seed=2)
    carry = head.initial_carry(b1)
    carry, *_ = head(carry, b1)
    carry, *_ = head(carry, b2)  # nobody halted: data stays b1
    assert torch.equal(carry.current_data["inputs"], b1["inputs"])
    carry.halted[:2] = True
    carry, *_ = head(carry, b2)
    assert torch.equal(carry.current_data["inputs"][:2], b2["inputs"][:2])
    assert torch.equal(carry.current_data["inputs"][2:], b1["inputs"][2:])
    assert carry.steps.tolist() == [1, 1, 3, 3]


def test_carry_state_roundtrip():
    head = build(FAMILIES["hrm"]).train()
    b = make_batch()
    carry, *_ = head(head.initial_carry(b), b)
    again = carry_from_state({k: v.clone() for k, v in carry_to_state(carry).items()})
    torch.manual_seed(1)
    _, l1, *_ = head(carry, b)
    torch.manual_seed(1)
    _, l2, *_ = head(again, b)
    assert torch.equal(l1, l2)


def test_sign_sgd_sparse_math():
    emb = PuzzleEmbedding(6, 3)
    with torch.no_grad():
        emb.weights.copy_(torch.arange(18, dtype=torch.float32).view(6, 3))
    before = emb.weights.clone()
    emb.train()
    ids = torch.tensor([1, 3, 1, 4], dtype=torch.int32)
    out = emb(ids, torch.float32)
    grad = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [-3.0, 1.0, -0.5], [2.0, 2.0, 2.0]])
    (out * grad).sum().backward()
    opt = SignSGDSparse(emb, lr=0.1, weight_decay=0.5)
    opt.step()
    w = emb.weights
    decay = 1 - 0.1 * 0.5
    # id 1: grads summed first -> [-2, -1, 0] -> sign [-1, -1, 0]
    assert torch.allclose(w[1], before[1] * decay - 0.1 * torch.tensor([-1.0, -1.0, 0.0]))
    assert torch.allclose(w[3], before[3] * decay - 0.1 * torch.tensor([0.0, 1.0, -1.0]))
    assert torch.allclose(w[4], before[4] * decay - 0.1)
    for untouched in (0, 2, 5):  # no decay on rows that were not in the batch
        assert torch.equal(w[untouched], before[untouched])
    opt.zero_grad()
    assert emb.local_weights.grad is None


def test_puzzle_embedding_grad_and_no_grad_lookup():
    head = build(FAMILIES["hrm"]).train()
    b = make_batch()
    carry, loss, *_ = head(head.initial_carry(b), b)  # includes the no-grad Q-target segment
    loss.backward()
    (pe,) = puzzle_embedding_params(head)
    assert pe.local_weights.grad is not None and pe.local_weights.grad.abs().sum() > 0
    assert torch.equal(pe.local_ids, b["puzzle_identifiers"])
    assert "model.inner.puzzle_emb.weights" not in dict(head.named_parameters())


def test_losses():
    logits = torch.tensor([[[2.0, -1.0, 0.0]], [[0.5, 0.5, -3.0]]])
    labels = torch.tensor([[0], [-100]])
    s = torch.tensor([3.0, 0.5, 1.0], dtype=torch.float64)
    ce = stablemax_cross_entropy(logits, labels)
    assert ce.dtype == torch.float64 and ce[1, 0] == 0
    assert math.isclose(float(ce[0, 0]), -math.log(3.0 / s.sum().item()), rel_tol=1e-12)
    sm = softmax_cross_entropy(logits, labels)
    assert math.isclose(float(sm[0, 0]), float(-torch.log_softmax(logits[0, 0], -1)[0]), rel_tol=1e-6)
    assert sm[1, 0] == 0


def test_metrics_ignore_unlabelled_rows():
    head = build(tiny(halt_max_steps=1)).eval()
    b = make_batch(ignore_row=True)
    with torch.no_grad():
        _, _, m, _, done = head(head.initial_carry(b), b)
    assert bool(done) and int(m["count"]) == 3 and int(m["steps"]) == 3


def test_ema():
    head = build(FAMILIES["hrm"])
    ema = EMA(head, rate=0.5)
    p = head.model.inner.lm_head.weight
    start = p.detach().clone()
    with torch.no_grad():
        p.add_(2.0)
    ema.update()
    assert torch.allclose(ema.shadow["model.inner.lm_head.weight"], start + 1.0)
    with ema.swapped():
        assert torch.allclose(p, start + 1.0)
    assert torch.allclose(p, start + 2.0)
    other = EMA(head)
    other.load_state_dict(ema.state_dict())
    assert other.rate == 0.5


def test_bfloat16_forward_runs():
    head = build(tiny(forward_dtype="bfloat16")).train()
    b = make_batch()
    carry, loss, _, out, _ = head(head.initial_carry(b), b)
    assert out["logits"].dtype == torch.bfloat16 and carry.inner_carry.z_H.dtype == torch.bfloat16
    loss.backward()
    assert head.model.inner.lm_head.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("family", list(FAMILIES))
def test_tiny_training_lowers_loss(family):
    arch = FAMILIES[family].model_copy(update={"loss": LossConfig(loss_type="softmax_cross_entropy")})
    head = build(arch, seed=1)
    b = make_batch(B=8, seed=3)
    opts = build_optimizers(head, lr=3e-3, puzzle_emb_lr=1e-2, weight_decay=0.0, puzzle_emb_weight_decay=0.0,
                            betas=(0.9, 0.95))
    assert len(opts) == 2

    def eval_loss():
        head.eval()
        with torch.no_grad():
            carry = head.initial_carry(b)
            for _ in range(arch.halt_max_steps):
                carry, _, m, _, _ = head(carry, b)
        return float(m["lm_loss"])

    before = eval_loss()
    head.train()
    carry = head.initial_carry(b)
    for _ in range(40):
        carry, loss, *_ = head(carry, b)
        (loss / 8).backward()
        for o in opts:
            o.step()
            o.zero_grad()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
    assert count_parameters(head) > 0
