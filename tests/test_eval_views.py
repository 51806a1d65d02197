"""The report's views of a trained model (`hrm eval --report`): per-segment strips, accuracy by difficulty,
halting histogram, token confusion, closest failures first, config and parameter count, more curves."""

import numpy as np
import pytest

from hrmkit.cli import main as hrm
from hrmkit.data import sudoku
from hrmkit.data.format import load_split
from hrmkit.eval import breakdown
from hrmkit.eval.metrics import compute_metrics
from hrmkit.loading import load_model
from hrmkit.models import count_parameters
from test_eval_cli import Tables


class Report(Tables):
    """`Tables`, plus the thinking strips (their figure captions and svg count) and every svg aria-label."""

    def __init__(self, text):
        self.strips, self.labels, self._strip, self._cap = [], [], None, None
        super().__init__(text)

    def handle_starttag(self, tag, attrs):
        super().handle_starttag(tag, attrs)
        a = dict(attrs)
        if tag == "div" and "strip" in (a.get("class") or ""):
            self._strip = {"class": a["class"], "captions": [], "svgs": 0}
            self.strips.append(self._strip)
        elif tag == "figcaption" and self._strip is not None:
            self._cap = []
        elif tag == "svg":
            if self._strip is not None:
                self._strip["svgs"] += 1
            if a.get("aria-label"):
                self.labels.append(a["aria-label"])

    def handle_endtag(self, tag):
        super().handle_endtag(tag)
        if tag == "figcaption" and self._cap is not None:
            self._strip["captions"].append("".join(self._cap))
            self._cap = None
        elif tag == "div":
            self._strip = None

    def handle_data(self, data):
        super().handle_data(data)
        if self._cap is not None:
            self._cap.append(data)


@pytest.fixture(scope="module")
def report(sudoku4_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert hrm(["eval", str(sudoku4_run), "--report", str(out), "--examples", "4"]) == 0
    return Report((out / "report.html").read_text(encoding="utf-8"))


def test_report_has_per_segment_strips(report):
    assert report.strips, "no thinking strips"
    assert len(report.strips) <= 6
    for strip in report.strips:  # input, one figure per segment (3), expected
        caps = strip["captions"]
        assert strip["svgs"] == 5 and caps[0] == "input" and caps[-1] == "expected"
        seg = caps[1:-1]
        assert [c.split(":")[0] for c in seg] == ["segment 1", "segment 2", "segment 3"]
        assert all("q_halt" in c and "changed" in c for c in seg)
        assert sum("halting rule stops" in c for c in seg) <= 1


def test_difficulty_breakdown_counts_every_example(report, sudoku4):
    split = load_split(sudoku4, "test")
    inputs = np.asarray(split.sets["all"].inputs)
    clues = report.tables["difficulty-1"]
    assert clues[0][:4] == ["clues", "examples", "exact accuracy", "token accuracy"] and "copy_input (exact)" in clues[0]
    expected = dict(zip(*np.unique((inputs >= 2).sum(1), return_counts=True)))
    assert {int(r[0]): int(r[1]) for r in clues[1:]} == {int(k): int(v) for k, v in expected.items()}
    ratings = report.tables["difficulty-0"]  # the builder stored each puzzle's rating
    assert ratings[0][0] == "rating (solver dead ends)"
    assert sum(int(r[1]) for r in ratings[1:]) == len(inputs)
    stored = sudoku.load_ratings(split.path)
    assert stored is not None and stored.tolist() == [sudoku.rate((row - 1).tolist(), (2, 2)) for row in inputs]


def test_confusion_halting_model_and_curves(report, sudoku4_run):
    conf = report.tables["confusion-table"]
    assert [r[0] for r in conf[1:]] == ["1", "2", "3", "4"]  # expected tokens: the digits of the blank cells
    assert {"1", "2", "3", "4"} <= set(conf[0][1:-1])
    counts = np.array([[int(c) for c in r[1:-1]] for r in conf[1:]])
    right = sum(counts[i, conf[0][1:-1].index(d)] for i, d in enumerate(["1", "2", "3", "4"]))
    summary = report.tables["summary-table"]
    token = float(summary[1][summary[0].index("token accuracy")].rstrip("%")) / 100
    assert right / counts.sum() == pytest.approx(token, abs=1e-3)  # the table counts the cells token accuracy scores
    model_rows = dict((r[0], r[1]) for r in report.tables["model-table"][1:])
    head = load_model(sudoku4_run).head
    assert model_rows["parameters (puzzle embedding table excluded)"] == f"{count_parameters(head):,}"
    assert model_rows["halt_max_steps"] == "3"
    assert "Examples by halting step" in report.labels
    assert {"Learning rate", "Token accuracy on the cells to fill, and the baselines'"} <= set(report.labels)


def test_failures_ranked_closest_first():
    labels = np.array([[2, 3, 4, 5]] * 5)
    preds = labels.copy()
    preds[0, :3] = 1  # 3 wrong
    preds[2, :1] = 1  # 1 wrong
    preds[3, :2] = 1  # 2 wrong
    fails, wins = breakdown.pick_examples(labels, preds, 2)
    assert fails.tolist() == [2, 3] and set(wins.tolist()) <= {1, 4} and len(wins) == 2
    tables = breakdown.breakdown_tables("maze", np.ones((5, 4), int), labels, preds)
    assert tables[0]["name"] == "shortest path (moves)"
    m = compute_metrics(np.ones((5, 4), int), labels, preds)
    assert tables[0]["rows"][0]["exact_accuracy"] == m["overall"]["exact_accuracy"]


def test_token_accuracy_curve_only_beside_baselines(tmp_path):
    import json

    from hrmkit.eval.report import render_report

    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(json.dumps({"global_step": s, "eval/token_accuracy": 0.5, "lr": 1e-3 * s})
                             for s in (1, 2)) + "\n")
    assert "Token accuracy on the cells" not in render_report({"exact_accuracy": 0.1}, {}, None, log)
    html = render_report({"exact_accuracy": 0.1}, {"copy_input": {"token_accuracy": 0.2}}, None, log)
    assert "Token accuracy on the cells" in html and "copy_input (baseline)" in html and "Learning rate" in html
