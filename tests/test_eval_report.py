"""The HTML report: written atomically, parses, shows baselines beside token accuracy, embeds its images."""

import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from hrmkit.errors import HrmkitError

from hrmkit.eval.arc_scoring import ArcPrediction, arc_task_table, score_arc
from hrmkit.eval.baselines import compute_baselines
from hrmkit.eval.metrics import compute_metrics
from hrmkit.eval.report import load_metrics_jsonl, make_example, tokens_to_grid, write_report
from hrmkit.eval.sensitivity import diagnose


class Page(HTMLParser):
    """Collects tables (by id) as lists of rows of cell texts, tag counts and every src/href value."""

    def __init__(self):
        super().__init__()
        self.tables, self.tags, self.links = {}, {}, []
        self._table = self._row = self._cell = None
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href", "xlink:href")]
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id") or f"table{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path):
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def fake_sudoku(n=24, seed=0):
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(81), 9)
    base = (r * 3 + r // 3 + c) % 9
    labels = np.stack([rng.permutation(9)[base] + 2 for _ in range(n)])
    inputs = np.where(rng.random((n, 81)) < 0.5, 1, labels)
    return inputs, labels


def sudoku_report(tmp_path, diagnosis=True):
    inputs, labels = fake_sudoku()
    preds = labels.copy()
    preds[::3] = np.where(inputs[::3] == 1, 5, labels[::3])  # a third of the examples wrong
    summary = compute_metrics(inputs, labels, preds, task="sudoku", q_halt=np.linspace(-1, 1, len(preds)),
                              steps=np.full(len(preds), 16))
    baselines = compute_baselines(inputs, labels, task="sudoku")
    lookup = {inputs[i].tobytes(): preds[i] for i in range(len(preds))}
    diag = diagnose(lambda b: np.stack([lookup.get(r.tobytes(), r) for r in b["inputs"]]),
                    {"inputs": inputs, "labels": labels}, task="sudoku") if diagnosis else None
    log = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"global_step": s, "train": {"loss": 2.0 / (1 + s)}, "lr": 1e-4}) for s in range(0, 500, 50)]
    lines += [json.dumps({"global_step": s, "eval/exact_accuracy": s / 1000, "eval/token_accuracy": 0.9})
              for s in (100, 300)]
    lines += ["not json", "", json.dumps({"no_step": 1})]
    log.write_text("\n".join(lines) + "\n")
    examples = [make_example("sudoku", inputs[i], labels[i], [preds[i]], bool((preds[i] == labels[i]).all()),
                             name=f"#{i}") for i in range(6)]
    comparison = [{"name": "step_1000", "step": 1000, "metrics": summary, "baselines": baselines, "diagnosis": diag},
                  {"name": "step_2000", "step": 2000, "metrics": summary, "baselines": baselines}]
    out = tmp_path / "report"
    path = write_report(out, summary, baselines, diag, log, examples, None, comparison, title="sudoku test")
    return path, summary, baselines


def test_report_written_parses_and_is_self_contained(tmp_path):
    path, summary, _ = sudoku_report(tmp_path)
    assert path == tmp_path / "report" / "report.html"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # atomic write left no temporary
    page = parse(path)
    assert page.tags.get("svg", 0) >= 2 + 6 * 3  # two charts, examples: input, expected, one prediction
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert page.links == []  # nothing to fetch: no src/href at all
    text = " ".join(page.text)
    assert "Learning curves" in text and "train/loss" in text and "eval/exact_accuracy" in text
    # token accuracy is plotted only beside the baselines' token accuracy
    assert "eval/token_accuracy" in text and "copy_input (baseline)" in text and "most_common_token (baseline)" in text
    assert "Checkpoint comparison" in text and "reads its input" in text


def test_baselines_beside_token_accuracy_and_copy_input_is_zero(tmp_path):
    path, summary, baselines = sudoku_report(tmp_path)
    table = parse(path).tables["summary-table"]
    header = table[0]
    assert header.index("token accuracy") == header.index("exact accuracy") + 1
    rows = {r[0]: dict(zip(header, r)) for r in table[1:]}
    assert set(rows) == {"model", "copy_input", "most_common_token", "naked_singles"}
    assert rows["copy_input"]["exact accuracy"] == "0.0%"
    assert rows["copy_input"]["token accuracy"] == "0.0%"
    assert baselines["copy_input"]["overall"]["exact_accuracy"] == 0.0
    assert rows["model"]["exact accuracy"] == f"{100 * summary['overall']['exact_accuracy']:.1f}%"
    comp = parse(path).tables["comparison-table"]
    assert "best baseline (exact)" in comp[0] and len(comp) == 3


def test_warnings_for_input_invariant_model_and_missing_diagnosis(tmp_path):
    inputs, labels = fake_sudoku()
    const = lambda b: np.full(b["inputs"].shape, 6)
    diag = diagnose(const, {"inputs": inputs, "labels": labels}, task="sudoku")
    summary = compute_metrics(inputs, labels, const({"inputs": inputs}), task="sudoku")
    path = write_report(tmp_path, summary, compute_baselines(inputs, labels, task="sudoku"), diag)
    verdict = " ".join(parse(path).text)
    assert "INPUT-INVARIANT" in verdict and "COLLAPSED" in verdict and "does not beat" in verdict
    path = write_report(tmp_path / "b", summary, {}, None)
    assert "Input sensitivity was not measured" in path.read_text()
    assert "No baselines were computed" in path.read_text()


def test_arc_table_and_maze_and_arc_examples(tmp_path):
    arc = pytest.importorskip("hrmkit.data.arc")
    a, b = np.array([[1, 2], [3, 4]]), np.array([[5]])
    preds = [ArcPrediction("t1", 0, tokens=arc.encode_grid(a)), ArcPrediction("t1", 0, tokens=arc.encode_grid(a)),
             ArcPrediction("t1", 0, tokens=arc.encode_grid(b), q_halt=2.0), ArcPrediction("t2", 0, grid=b)]
    score = score_arc(preds, {"t1": [a], "t2": [a]}, ks=(1, 2))
    maze = np.array(list("#S o  G##" * 4))[:36].reshape(6, 6)
    maze_pred = maze.copy()
    maze_pred[1, 1] = "o"
    examples = [
        {"kind": "arc", "name": "t1/0", "input": a, "expected": a, "predictions": [a, b], "votes": [2, 1],
         "q": [0.5, 0.88], "correct": True},
        {"kind": "arc", "name": "t2/0", "input": a, "expected": a, "predictions": [np.array([[1, 2], [3, 9]]), None],
         "correct": False},
        {"kind": "maze", "name": "m", "input": maze, "expected": maze, "predictions": [maze_pred], "correct": False},
    ]
    flat = {k: v for k, v in score.items() if k.startswith("pass@")} | {"exact_accuracy": 0.5, "token_accuracy": 0.9}
    path = write_report(tmp_path, flat, {}, None, None, examples, arc_task_table(score))
    page = parse(path)
    arc_rows = page.tables["arc-table"]
    assert arc_rows[0][:4] == ["task", "test inputs", "pass@1", "pass@2"]
    assert arc_rows[1][:4] == ["t1", "1", "100.0%", "100.0%"] and arc_rows[2][2] == "0.0%"
    html = path.read_text()
    assert "1 cell differs" in html and "invalid" in html and html.count('class="diff"') == 2  # arc + maze
    assert "pass@2" in page.tables["summary-table"][0]


def test_token_helpers_and_jsonl(tmp_path):
    g = tokens_to_grid("sudoku", np.array([1, 2, 10] + [0] * 78))
    assert g.shape == (9, 9) and g[0, :3].tolist() == [0, 1, 9]
    m = tokens_to_grid("maze", np.array([1, 2, 3, 4]))
    assert m.tolist() == [["#", " "], ["S", "G"]]
    with pytest.raises(HrmkitError, match="unknown task 'chess'"):
        tokens_to_grid("chess", np.zeros(4))
    assert load_metrics_jsonl(tmp_path / "missing.jsonl") == []
    (tmp_path / "m.jsonl").write_text('{"global_step": 5, "a": {"b": 1}}\n{"global_step": 1}\n')
    assert load_metrics_jsonl(tmp_path / "m.jsonl") == [{"global_step": 1}, {"global_step": 5, "a/b": 1}]


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    path, _, _ = sudoku_report(tmp_path)
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "summary-table" in dom and "copy_input" in dom and "<svg" in dom
