"""Reference checkpoints and reference-built datasets, against numbers recorded by running the
reference code itself on CPU (tests/fixtures/reference/README.md says how):

- `hrm eval CKPT --data DIR` on a reference checkpoint (`step_N` + `all_config.yaml`) reproduces the reference
  evaluator's exact accuracy and token accuracy, every prediction, and on ARC the pass@k of TinyRecursiveModels'
  evaluator / sapientinc/HRM's arc_eval.ipynb, on datasets built by the reference builders;
- ARC scoring of a known mix of right and wrong predictions equals the references' scoring of the same arrays;
- `init_from=` fine-tunes from a reference checkpoint, rebuilding a puzzle table of another size."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.data.format import load_identifiers, load_split
from hrmkit.errors import HrmkitError
from hrmkit.eval.arc_eval import score_arc_split
from hrmkit.eval.evaluate import evaluate_split
from hrmkit.loading import load_model

FIX = Path(__file__).parent / "fixtures" / "reference"
CASES = {  # checkpoint folder: dataset folder built by the same reference's builder
    "hrm-sudoku": "sudoku-hrm",
    "hrm-arc": "arc-hrm",
    "trm-arc": "arc-trm",
}


def _checkpoint(name: str) -> Path:
    return next(p for p in (FIX / name).iterdir() if p.name.startswith("step_"))


def _eval_json(capsys, *args) -> dict:
    assert hrm(["eval", *map(str, args), "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_scores(name: str, summary: dict, arc: dict | None, step: int) -> None:
    """`summary`/`arc` (hrmkit's evaluation) against the reference evaluator's recorded numbers."""
    recorded = json.loads((FIX / name / "recorded.json").read_text())
    ref = recorded["metrics"]["all"]
    assert step == recorded["step"]
    assert summary["exact_accuracy"] == pytest.approx(ref["exact_accuracy"], abs=1e-6)
    assert summary["reference_token_accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    assert summary["q_halt_accuracy"] == pytest.approx(ref["q_halt_accuracy"], abs=1e-6)
    if name == "trm-arc":  # TinyRecursiveModels evaluators/arc.py
        for k in (1, 2, 5, 10, 100, 1000):
            assert arc[f"pass@{k}"] == pytest.approx(recorded["metrics"][f"ARC/pass@{k}"], abs=1e-9)
    if name == "hrm-arc":  # sapientinc/HRM arc_eval.ipynb: a task counts when all its test inputs are right
        nb = json.loads((FIX / name / "notebook.json").read_text())
        assert arc["n_tasks"] == nb["n_tasks"]
        for k in (1, 2, 10, 100, 1000):
            assert arc[f"tasks_solved_pass@{k}"] == pytest.approx(nb[f"pass@{k}"], abs=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_checkpoint_reproduces_the_reference_evaluator(name):
    """Every prediction (argmax of the last segment) and q_halt logit of every test row, exact accuracy, the
    references' token accuracy and ARC pass@k equal what the reference code recorded on the same files."""
    model = load_model(FIX / name, "cpu", data=FIX / CASES[name])  # the folder: its newest step_N
    assert model.reference
    split = load_split(FIX / CASES[name], "test")
    result = evaluate_split(model.head, split, batch_size=16, diagnose=False)
    assert result.task.name == ("sudoku" if "sudoku" in name else "arc")
    _check_scores(name, result.summary.to_dict(), result.arc, model.step)
    ref = np.load(FIX / name / "preds.npz")  # the reference's test batches, its last one padded
    ours, n = result.predictions, split.num_examples
    assert len(ours.preds) == n and np.array_equal(ours.puzzle_identifiers, ref["puzzle_identifiers"][:n])
    assert np.array_equal(ours.preds, ref["preds"][:n].astype(np.int64))
    assert np.allclose(ours.q_halt, ref["q_halt_logits"][:n], atol=1e-5)


@pytest.mark.parametrize("name", ["hrm-sudoku", pytest.param("trm-arc", marks=pytest.mark.slow)])
def test_hrm_eval_on_a_reference_checkpoint(name, capsys):
    """The command line: `hrm eval step_N --data DIR` (the TRM file has torch.compile's `_orig_mod.` names; its
    ARC evaluation with the input-sensitivity check takes ~25 s on 2 cores, so it runs with the slow tests)."""
    r = _eval_json(capsys, _checkpoint(name), "--data", FIX / CASES[name])
    _check_scores(name, r, r.get("arc"), r["step"])


@pytest.mark.parametrize("name", ["hrm-arc", "trm-arc"])
def test_arc_scoring_of_a_known_mix_equals_the_references(name):
    """Row r of the test split predicts its label (r % 4 == 0), its input (1, 2) or the model's answer (3); the
    references' own scoring of these arrays was recorded (TRM: evaluators/arc.py; HRM: arc_eval.ipynb)."""
    data = FIX / CASES[name]
    split = load_split(data, "test")
    mixed = np.load(FIX / name / "mixed.npz")
    a = split.sets["all"]
    n = a.num_examples
    puz = np.searchsorted(a.puzzle_indices, np.arange(n), side="right") - 1
    preds = SimpleNamespace(preds=mixed["preds"].astype(np.int64), q_halt=mixed["q_halt_logits"],
                            inputs=np.asarray(a.inputs).astype(np.int64), puzzle_identifiers=a.puzzle_identifiers[puz])
    score = score_arc_split(preds, split)["arc"]
    ref = json.loads((FIX / name / "mixed.json").read_text())
    if name == "trm-arc":
        got = {k: score[f"pass@{k}"] for k in (1, 2, 5, 10, 100, 1000)}
        assert got == pytest.approx({k: ref[f"ARC/pass@{k}"] for k in got}, abs=1e-9)
    else:
        got = {k: score[f"tasks_solved_pass@{k}"] for k in (1, 2, 10, 100, 1000)}
        assert got == pytest.approx({k: ref[f"pass@{k}"] for k in got}, abs=1e-9)
    assert 0 < score["pass@2"] < 1  # the mix is informative: some inputs solved, some not


def test_reference_identifiers_parse_in_both_schemes():
    hrm_names, trm_names = load_identifiers(FIX / "arc-hrm"), load_identifiers(FIX / "arc-trm")
    assert any("_t" in n for n in hrm_names) and any("|||t" in n for n in trm_names)
    assert not (FIX / "arc-hrm" / "test_tasks.json").exists()


def test_a_dataset_that_does_not_fit_is_a_clear_error(capsys):
    assert hrm(["eval", str(_checkpoint("hrm-sudoku")), "--data", str(FIX / "arc-hrm"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the dataset" in err and "vocab_size 11 (model) vs 12 (dataset)" in err and "init_from" in err


def test_reference_checkpoint_without_its_config_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "step_5").write_bytes(_checkpoint("hrm-sudoku").read_bytes())
    assert hrm(["eval", str(tmp_path / "step_5"), "--data", str(FIX / "sudoku-hrm"), "--device", "cpu"]) == 2
    assert "needs its run's all_config.yaml" in capsys.readouterr().err
    with pytest.raises(HrmkitError, match="all_config.yaml"):
        load_model(tmp_path / "step_5")


def test_init_from_a_reference_checkpoint_fine_tunes(tmp_path, capsys):
    """Same dataset: the weights are the checkpoint's at step 0 (architecture from its all_config.yaml)."""
    from hrmkit.presets import resolve_config
    from hrmkit.train.loop import train

    ckpt = _checkpoint("hrm-sudoku")
    cfg = resolve_config(overrides=[f"data_path={FIX / 'sudoku-hrm'}", f"out_dir={tmp_path}", f"init_from={ckpt}",
                                    "global_batch_size=16", "max_steps=2", "epochs=10", "eval_interval=null",
                                    "lr_warmup_steps=1", "eval_batch_size=24", "device=cpu"])
    assert cfg.arch.hidden_size == 16 and cfg.arch.H_layers == 1 and cfg.arch.forward_dtype == "float32"
    reference = load_model(ckpt, data=FIX / "sudoku-hrm").head.state_dict()
    first = {}
    run = train(cfg, on_step=lambda state: first or first.update(
        {k: v.clone() for k, v in state.model.state_dict().items()})).run_dir
    assert "initialised from" in capsys.readouterr().out
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 2
    # one optimizer step moved the weights from the checkpoint's, a little
    w = "model.inner.lm_head.weight"
    assert not torch.equal(first[w], reference[w]) and torch.allclose(first[w], reference[w], atol=0.05)
    # an hrmkit run folder works as well: its newest checkpoint (the architecture comes from its config)
    from hrmkit.train.data import load_run_data
    from hrmkit.train.loop import initial_model

    again = resolve_config(overrides=[f"data_path={FIX / 'sudoku-hrm'}", f"out_dir={tmp_path / 'b'}", f"init_from={run}",
                                      "global_batch_size=16", "max_steps=1", "eval_interval=null", "device=cpu"])
    model = initial_model(again, load_run_data(again))
    assert torch.equal(model.state_dict()[w], load_model(run).head.state_dict()[w])


def test_init_from_rebuilds_a_puzzle_table_of_another_size(tmp_path, capsys):
    """A TRM ARC checkpoint (22 puzzle identifiers) fine-tuned on an hrmkit ARC dataset with another number of
    identifiers: every row of the new table is the mean of the checkpoint's rows (TRM load_checkpoint)."""
    from hrmkit.presets import resolve_config
    from hrmkit.train.data import load_run_data
    from hrmkit.train.loop import initial_model

    tasks = tmp_path / "tasks" / "evaluation"
    tasks.mkdir(parents=True)
    grid = {"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}
    (tasks / "abc.json").write_text(json.dumps({"train": [grid, grid], "test": [grid]}))
    assert hrm(["data", "arc", "--out", str(tmp_path / "d"), "--tasks-dir", str(tmp_path / "tasks"), "--num-aug", "4",
                "--workers", "1"]) == 0
    ckpt = _checkpoint("trm-arc")
    cfg = resolve_config(overrides=[f"data_path={tmp_path / 'd'}", f"out_dir={tmp_path / 'runs'}", f"init_from={ckpt}",
                                    "global_batch_size=4", "max_steps=1", "epochs=4", "eval_interval=null", "device=cpu"])
    state = initial_model(cfg, load_run_data(cfg)).state_dict()
    out = capsys.readouterr().out
    assert "every row reset to the mean" in out
    old = load_model(ckpt, data=FIX / "arc-trm").head.state_dict()["model.inner.puzzle_emb.weights"]
    new = state["model.inner.puzzle_emb.weights"]
    assert old.shape[0] == 22 and new.shape[0] == 1 + 5
    assert torch.allclose(new, old.mean(0, keepdim=True).expand_as(new))
    ref = load_model(ckpt, data=FIX / "arc-trm").head.state_dict()
    assert torch.equal(state["model.inner.lm_head.weight"], ref["model.inner.lm_head.weight"])
