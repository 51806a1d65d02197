"""`hrm eval`: JSON keys, text summary, HTML report, the input-sensitivity verdict on broken models, comparisons."""

import json
from html.parser import HTMLParser

import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.config import TrainConfig
from hrmkit.eval import cli as eval_cli
from hrmkit.models import build_model
from hrmkit.presets import resolve_config
from hrmkit.train.checkpoint import list_checkpoints, load_checkpoint
from hrmkit.train.loop import train

TINY = [
    "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
    "arch.L_cycles=2", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=32", "global_batch_size=32",
    "lr=3e-3", "lr_warmup_steps=5", "log_every=5", "eval_batch_size=64", "max_time_s=null",
]


def _train(data, out, *extra):
    cfg = resolve_config(preset="demo", overrides=TINY + [f"data_path={data}", f"out_dir={out}", *extra])
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def tiny_run(sudoku4, tmp_path_factory):
    """A 10-step run with checkpoints at steps 5 and 10."""
    return _train(sudoku4, tmp_path_factory.mktemp("runs"), "max_steps=10", "checkpoint_every=5")


def _json(capsys, *args):
    capsys.readouterr()
    assert hrm(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


class Tables(HTMLParser):
    """Table rows (lists of cell texts) by table id, and all the text."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.text, self._t, self._cell = {}, [], None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._t = self.tables.setdefault(dict(attrs).get("id") or f"t{len(self.tables)}", [])
        elif tag == "tr" and self._t is not None:
            self._t.append([])
        elif tag in ("td", "th") and self._t is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._t[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._t = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def test_json_has_scores_baselines_and_diagnosis(tiny_run, capsys):
    r = _json(capsys, tiny_run)
    assert r["step"] == 10 and r["task"] == "sudoku" and r["n_examples"] == 64
    for key in ("exact_accuracy", "token_accuracy", "n_examples", "input_sensitivity", "diagnosis"):
        assert key in r, key
    assert r["baselines"]["copy_input"]["exact_accuracy"] == 0.0  # every puzzle has blanks to fill
    assert r["baselines"]["most_common_token"]["source"] == "train"
    assert {"input_invariant", "collapsed", "warning", "sensitivity", "collapse"} <= set(r["diagnosis"])
    assert r["input_sensitivity"] == r["diagnosis"]["sensitivity"]["changed_examples_share"]
    assert sum(r["summary"]["halt_step_histogram"].values()) == 64
    assert r["report"] is None and "comparison" not in r


def test_text_summary_and_report(tiny_run, tmp_path, capsys):
    capsys.readouterr()
    assert hrm(["eval", str(tiny_run), "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("predictor"))
    assert header.index("exact accuracy") < header.index("token accuracy")
    assert "copy_input" in out and "most_common_token" in out
    assert "Input sensitivity:" in out
    assert "copy-input baseline gets 0.0% exact on Sudoku" in out
    page = Tables((tmp_path / "rep" / "report.html").read_text(encoding="utf-8"))
    table = page.tables["summary-table"]
    assert table[0].index("token accuracy") == table[0].index("exact accuracy") + 1
    assert {row[0] for row in table[1:]} == {"model", "copy_input", "most_common_token", "naked_singles"}
    text = " ".join(page.text)
    assert "copy-input baseline gets 0.0% exact on Sudoku" in text
    assert "Learning curves" in text and "Examples" in text and "Input sensitivity" in text
    assert "diagnosis-table" in page.tables


def _random_init_checkpoint(run, path, seed=0):
    """A copy of the run's last checkpoint with freshly initialised weights (no EMA)."""
    state = load_checkpoint(list_checkpoints(run)[-1])
    cfg = TrainConfig.model_validate(json.loads(state["config"]))
    torch.manual_seed(seed)
    state.update(model=build_model(cfg.arch, **state["model_shape"]).state_dict(), ema=None)
    torch.save(state, path)
    return path


def test_random_and_constant_models_are_flagged(tiny_run, tmp_path, capsys, monkeypatch):
    untrained = _random_init_checkpoint(tiny_run, tmp_path / "random_init.pt")
    d = _json(capsys, untrained)["diagnosis"]
    # A random network does depend on its input; what gives it away is its output: tokens no answer holds.
    assert not d["ok"] and d["invalid_outputs"] and "INVALID OUTPUTS" in d["warning"]

    class Constant(torch.nn.Module):
        """Runs the real head, then answers digit token 2 everywhere."""

        def __init__(self, head):
            super().__init__()
            self.head = head

        def initial_carry(self, batch):
            return self.head.initial_carry(batch)

        def forward(self, carry, batch):
            carry, loss, metrics, outputs, done = self.head(carry, batch)
            return carry, loss, metrics, {**outputs, "preds": torch.full_like(outputs["preds"], 2)}, done

    def load_constant(*args, real=eval_cli.load_trained, **kwargs):
        model = real(*args, **kwargs)
        model.head = Constant(model.head)
        return model

    monkeypatch.setattr(eval_cli, "load_trained", load_constant)
    r = _json(capsys, untrained)
    assert r["diagnosis"]["input_invariant"] and r["diagnosis"]["collapsed"] and r["input_sensitivity"] == 0.0
    capsys.readouterr()
    assert hrm(["eval", str(untrained)]) == 0
    out = capsys.readouterr().out
    assert "INPUT-INVARIANT" in out and "COLLAPSED" in out


def test_checkpoints_compared_side_by_side(tiny_run, tmp_path, capsys):
    r = _json(capsys, tiny_run, "--all-checkpoints", "--report", tmp_path)
    comp = r["comparison"]
    assert [c["step"] for c in comp] == [5, 10] and r["step"] == 10
    for c in comp:
        for key in ("exact_accuracy", "token_accuracy", "baselines", "input_sensitivity", "input_invariant",
                    "collapsed", "diagnosis"):
            assert key in c, key
        assert c["baselines"]["copy_input"]["exact_accuracy"] == 0.0
    table = Tables((tmp_path / "report.html").read_text(encoding="utf-8")).tables["comparison-table"]
    assert len(table) == 3 and "best baseline (exact)" in table[0]
    first, last = list_checkpoints(tiny_run)
    capsys.readouterr()
    assert hrm(["eval", str(first), str(last)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint comparison" in out and first.name in out and last.name in out


def test_bad_targets_are_clear_errors(tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    for target, words in ((tmp_path / "missing", "no such run folder"), (tmp_path / "empty", "not a run folder"),
                          (tmp_path / "notes.txt", "checkpoint")):
        capsys.readouterr()
        assert hrm(["eval", str(target)]) == 2
        assert words in capsys.readouterr().err
    assert hrm(["eval", str(tiny_run), "--aggregate-checkpoints"]) == 2
    assert "ARC" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_trained_model_is_not_flagged(tmp_path, capsys):
    """The demo preset, trained briefly, reads its input and beats the baselines' token accuracy."""
    from hrmkit.train.data import build_demo_data

    build_demo_data(tmp_path / "data", resolve_config(preset="demo").demo_data)
    run = train(resolve_config(preset="demo", overrides=[
        f"data_path={tmp_path / 'data'}", f"out_dir={tmp_path / 'runs'}", "max_steps=200", "max_time_s=null"])).run_dir
    r = _json(capsys, run)
    assert r["diagnosis"]["ok"], r["diagnosis"]["warning"]
    assert r["token_accuracy"] > r["baselines"]["most_common_token"]["token_accuracy"]
