"""Input sensitivity and collapse: models that ignore their input are flagged, models that read it are not."""

import numpy as np
import pytest
import torch
from torch import nn

from hrmkit.eval.metrics import compute_metrics
from hrmkit.eval.sensitivity import (act_predict_fn, collapse_metrics, diagnose, input_sensitivity,
                                     is_input_invariant, randomize_tokens, shuffle_rows)

V, S = 11, 81


def sudoku_batch(b=48, seed=0):
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(S), 9)
    base = (r * 3 + r // 3 + c) % 9
    labels = np.stack([rng.permutation(9)[base] + 2 for _ in range(b)])
    inputs = np.where(rng.random((b, S)) < 0.5, 1, labels)
    return {"inputs": torch.as_tensor(inputs, dtype=torch.int32), "labels": torch.as_tensor(labels, dtype=torch.int32),
            "puzzle_identifiers": torch.zeros(b, dtype=torch.int32)}


class PureAttention(nn.Module):
    """Randomly initialised attention stack without skip connections. At init its token representations
    collapse to one vector (rank collapse, Dong et al. 2021, 'Attention is not all you need'), so it predicts
    the same token everywhere - the kind of untrained model the checks must catch."""

    def __init__(self, d=32, layers=4):
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.att = nn.ModuleList(nn.MultiheadAttention(d, 4, batch_first=True) for _ in range(layers))
        self.head = nn.Linear(d, V)

    def forward(self, x):
        h = self.emb(x.long())
        for a in self.att:
            h = a(h, h, h, need_weights=False)[0]
        return self.head(h).argmax(-1)


class PerToken(nn.Module):
    """Embedding + linear head: each output cell is a function of the input token at that cell."""

    def __init__(self, d=16, vocab=V):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.head = nn.Linear(d, vocab)

    def forward(self, x):
        return self.head(self.emb(x.long()))


def test_shuffle_is_a_derangement_and_randomize_keeps_pad():
    rng = np.random.default_rng(0)
    x = np.arange(20).reshape(10, 2)
    shuffled, perm = shuffle_rows(x, rng)
    assert sorted(perm.tolist()) == list(range(10)) and all(perm != np.arange(10))
    assert np.array_equal(shuffled, x[perm])
    one, perm1 = shuffle_rows(x[:1], rng)
    assert perm1.tolist() == [0]
    t = np.array([[0, 1, 5, 0, 9, 1]])
    out = randomize_tokens(np.repeat(t, 200, 0), rng, valid_tokens=range(2, 12), keep_tokens=(0, 1))
    assert (out[:, [0, 3]] == 0).all() and (out[:, [1, 5]] == 1).all()
    assert set(np.unique(out[:, [2, 4]])) == set(range(2, 12))


def test_is_input_invariant_threshold():
    assert is_input_invariant(0.0) and is_input_invariant(0.049)
    assert not is_input_invariant(0.05) and not is_input_invariant(1.0)
    assert not is_input_invariant(None)
    assert is_input_invariant(0.3, threshold=0.5)


def test_constant_model_is_flagged():
    batch = sudoku_batch()
    const = lambda b: torch.full(b["inputs"].shape, 5, dtype=torch.long)
    d = diagnose(const, batch, task="sudoku")
    assert d["input_invariant"] and d["collapsed"] and not d["ok"]
    assert d["sensitivity"]["changed_examples_share"] == 0.0
    assert d["collapse"]["n_distinct_pred_tokens"] == 1
    assert "INPUT-INVARIANT" in d["warning"] and "COLLAPSED" in d["warning"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_init_rank_collapsed_model_is_flagged(seed):
    torch.manual_seed(seed)
    model = PureAttention().eval()
    with torch.no_grad():
        d = diagnose(lambda b: model(b["inputs"]), sudoku_batch(), task="sudoku")
    assert d["input_invariant"] or d["collapsed"]
    assert d["warning"]


def test_model_fitted_to_the_label_prior_is_flagged():
    """The origin failure: padded canvases whose answers are mostly background; a model trained a little
    learns the prior, scores a high token accuracy, solves nothing and ignores its input."""
    rng = np.random.default_rng(0)
    n = 64
    labels = np.where(rng.random((n, S)) < 0.75, 2, rng.integers(3, 11, size=(n, S)))
    labels[:, 60:] = -100  # padding, ignored
    inputs = np.where(labels == -100, 0, rng.integers(2, 11, size=(n, S)))
    x, y = torch.as_tensor(inputs), torch.as_tensor(labels)
    torch.manual_seed(0)
    model = PerToken(vocab=12)  # ARC vocabulary
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 12), y.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    predict = lambda b: model(b["inputs"]).argmax(-1)
    with torch.no_grad():
        preds = predict({"inputs": x})
        d = diagnose(predict, {"inputs": x, "labels": y}, task="arc")
    m = compute_metrics(inputs, labels, preds.numpy(), task="arc")["overall"]
    assert m["token_accuracy"] > 0.7 and m["exact_accuracy"] == 0.0
    assert d["input_invariant"] and d["collapsed"]


def identity(b):
    return b["inputs"].clone()


def test_copy_and_transform_models_are_not_flagged():
    batch = sudoku_batch()
    d = diagnose(identity, batch, task="sudoku")
    assert not d["input_invariant"] and not d["collapsed"] and d["ok"] and d["warning"] == ""
    assert d["sensitivity"]["shuffle"]["changed_examples_share"] == 1.0
    assert d["sensitivity"]["random_tokens"]["changed_cells_share"] > 0.5
    # a digit-relabelling transform of the input
    relabel = lambda b: torch.where(b["inputs"] >= 2, (b["inputs"] - 2 + 4) % 9 + 2, b["inputs"])
    d2 = diagnose(relabel, batch, task="sudoku")
    assert not d2["input_invariant"] and not d2["collapsed"]


def test_perturbed_batches_keep_tensor_type_and_other_keys():
    seen = []

    def spy(b):
        seen.append((type(b["inputs"]), b["inputs"].dtype, b["puzzle_identifiers"].sum().item()))
        return b["inputs"]

    batch = sudoku_batch(b=8)
    input_sensitivity(spy, batch, task="sudoku")
    assert len(seen) == 3 and all(s == (torch.Tensor, torch.int32, 0) for s in seen)
    # numpy batches work too; a batch of one cannot be shuffled
    np_batch = {"inputs": batch["inputs"].numpy()[:1], "labels": batch["labels"].numpy()[:1]}
    r = input_sensitivity(lambda b: b["inputs"], np_batch)
    assert r["shuffle"] is None and r["random_tokens"]["changed_examples_share"] == 1.0


def test_duplicate_and_padding_rows_are_left_out():
    row = np.arange(2, 11)
    same = {"inputs": np.stack([row] * 3), "labels": np.stack([row] * 3)}
    r = input_sensitivity(lambda b: b["inputs"], same, valid_tokens=range(2, 11))
    # shuffling identical rows changes no input: nothing to measure
    assert r["shuffle"]["n_examples"] == 0 and r["shuffle"]["changed_examples_share"] is None
    assert r["random_tokens"]["n_examples"] == 3
    padded = {"inputs": np.vstack([same["inputs"], np.zeros((1, 9), int)]),
              "labels": np.vstack([same["labels"], np.full((1, 9), -100)])}
    r = input_sensitivity(lambda b: b["inputs"], padded, valid_tokens=range(2, 11))
    assert r["random_tokens"]["n_examples"] == 3  # the padding row has no answer cells


def test_collapse_metrics_numbers():
    labels = np.array([[2, 3, 4, 5], [5, 4, 3, 2], [3, 2, 5, 4], [4, 5, 2, 3]])
    same = np.array([[2, 3, 4, 5]] * 4)
    c = collapse_metrics(same, labels)
    assert c["mode_prediction_share"] == 1.0 and c["label_mode_share"] == 0.25
    assert c["collapsed"] and any("same prediction" in r for r in c["reasons"])
    c2 = collapse_metrics(labels, labels)
    assert not c2["collapsed"] and c2["entropy_ratio"] == pytest.approx(1.0)
    assert c2["label_entropy_bits"] == pytest.approx(2.0)
    assert collapse_metrics(np.full((2, 3), 4))["collapsed"]  # no labels: a single token is enough


class FakeHead(nn.Module):
    """The model-head interface (initial_carry, head(carry, batch) -> 5-tuple); answers after 3 segments with
    its input (copy=True) or with the puzzle identifier's digit (copy=False, ignores the input)."""

    def __init__(self, copy):
        super().__init__()
        self.copy, self.w = copy, nn.Parameter(torch.zeros(1))

    def initial_carry(self, batch):
        return 0

    def forward(self, carry, batch):
        assert not self.training and not torch.is_grad_enabled()
        carry += 1
        x = batch["inputs"] if self.copy else (batch["puzzle_identifiers"][:, None] + 2).expand_as(batch["inputs"])
        outputs = {"preds": x.clone(), "q_halt_logits": torch.zeros(x.shape[0])}
        return carry, torch.zeros(()), {}, outputs, carry >= 3


def test_act_predict_fn_with_the_head_interface():
    batch = sudoku_batch(b=16)
    batch["puzzle_identifiers"] = torch.arange(16, dtype=torch.int32) % 9
    copy_head = FakeHead(copy=True).train()
    assert not diagnose(act_predict_fn(copy_head), batch, task="sudoku")["input_invariant"]
    assert copy_head.training  # mode restored
    # answering from the puzzle identifier alone: inputs perturbed, identifiers kept -> flagged
    d = diagnose(act_predict_fn(FakeHead(copy=False)), {k: v.numpy() for k, v in batch.items()}, task="sudoku")
    assert d["input_invariant"]
