"""Every value read from a file or an argument has a range, and a value outside it is
refused with exit code 2 and a message naming the file and field (no traceback, no exit 1, nothing allocated or
written); an exported folder's model card hashes are checked on load; work that would explode is refused."""

import json
import shutil

import numpy as np
import pytest
import torch

import hrmkit
from hrmkit import limits
from hrmkit.cli import main as hrm
from hrmkit.data.format import load_split
from hrmkit.deploy.export import export_model
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import read_jsonl, sha256
from hrmkit.loading import list_checkpoints


@pytest.fixture(scope="module")
def exported(sudoku4_run, tmp_path_factory):
    return export_model(sudoku4_run, tmp_path_factory.mktemp("export") / "exp").folder


@pytest.fixture(scope="module")
def puzzle(sudoku4):
    """A 4x4 test puzzle as a string (`hrm solve` input)."""
    from hrmkit.data.render import tokens_to_grid
    from hrmkit.tasks.sudoku import sudoku_string

    return sudoku_string(tokens_to_grid("sudoku", np.asarray(load_split(sudoku4, "test").sets["all"].inputs[0])))


def _cli(capsys, *args):
    capsys.readouterr()
    rc = hrm([str(a) for a in args])
    return rc, capsys.readouterr().err


def _tamper_export(src, dst, edit, rehash=True):
    """A copy of the export `src` whose config.json went through `edit`; with `rehash` the model card's hash is
    updated too (a consistent tamper, so that the range checks, not the hash check, must catch it)."""
    shutil.copytree(src, dst)
    path = dst / "config.json"
    old = sha256(path)
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    if rehash:
        card = dst / "README.md"
        card.write_text(card.read_text().replace(old, sha256(path)))
    return dst


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(config):
        d = config
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


SHAPE = {"seq_len": 16, "vocab_size": 6, "num_puzzle_identifiers": 1}
EXPORT_CASES = {  # each: the edit of an export's config.json and what the message must name
    "model_shape-extra-key": (_set("model_shape", {**SHAPE, "x": 1}), "model_shape"),
    "model_shape-list": (_set("model_shape", [16, 6, 1]), "model_shape"),
    "model_shape-string": (_set("model_shape", "16x6"), "model_shape"),
    "model_shape-negative": (_set("model_shape", {**SHAPE, "seq_len": -8}), "seq_len=-8"),
    "model_shape-1e9": (_set("model_shape", {**SHAPE, "num_puzzle_identifiers": 1e9}), "num_puzzle_identifiers"),
    "step-abc": (_set("step", "abc"), "'step'"),
    "hidden_size-1e12": (_set("train_config", "arch", "hidden_size", 10**12), "arch.hidden_size"),
    "H_cycles-1e9": (_set("train_config", "arch", "H_cycles", 1e9), "arch.H_cycles"),
}


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_tampered_export_config_is_refused_naming_the_field(case, exported, puzzle, tmp_path, capsys):
    edit, named = EXPORT_CASES[case]
    folder = _tamper_export(exported, tmp_path / "exp", edit)
    rc, err = _cli(capsys, "solve", "--checkpoint", folder, puzzle)
    assert rc == 2 and "config.json" in err and named in err, err
    assert "Traceback" not in err


def test_untampered_export_still_solves(exported, puzzle, tmp_path, capsys):
    folder = _tamper_export(exported, tmp_path / "exp", lambda c: None)  # same content, card rewritten the same
    rc, err = _cli(capsys, "solve", "--checkpoint", folder, puzzle)
    assert rc == 0, err


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_export_files_are_checked_against_the_card_hashes(name, exported, puzzle, tmp_path, capsys):
    folder = tmp_path / "exp"
    shutil.copytree(exported, folder)
    path = folder / name
    if name == "config.json":  # a change that would load fine: only the hash can tell
        path.write_text(path.read_text().replace('"step": ', '"step":  '))
    else:
        data = bytearray(path.read_bytes())
        data[-1] ^= 1  # one bit of one weight
        path.write_bytes(bytes(data))
    rc, err = _cli(capsys, "solve", "--checkpoint", folder, puzzle)
    assert rc == 2 and name in err and "README.md" in err, err
    with pytest.raises(HrmkitError, match=name):
        hrmkit.load(folder)


CHECKPOINT_CASES = {
    "seq_len-negative": (lambda s: s["model_shape"].__setitem__("seq_len", -16), "seq_len=-16"),
    "seq_len-string": (lambda s: s["model_shape"].__setitem__("seq_len", "16"), "seq_len='16'"),
    "step-abc": (lambda s: s.__setitem__("step", "abc"), "'step'"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_tampered_checkpoint_values_are_refused(case, sudoku4_run, puzzle, tmp_path, capsys):
    edit, named = CHECKPOINT_CASES[case]
    state = torch.load(list_checkpoints(sudoku4_run)[-1], weights_only=True)
    edit(state)
    path = tmp_path / "step_00000012.pt"
    torch.save(state, path)
    rc, err = _cli(capsys, "solve", "--checkpoint", path, puzzle)
    assert rc == 2 and str(path) in err and named in err, err


def test_resume_from_a_checkpoint_with_a_bad_step_is_refused(sudoku4_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(sudoku4_run, run)
    ckpt = list_checkpoints(run)[-1]
    state = torch.load(ckpt, weights_only=True)
    state["step"] = "abc"
    torch.save(state, ckpt)
    rc, err = _cli(capsys, "train", "--resume", run, "max_steps=20")
    assert rc == 2 and "'step'" in err and "abc" in err, err


@pytest.mark.parametrize("overrides", [["arch.hidden_size=1000000000000"], ["arch.H_cycles=1000000000"],
                                       ["model=trm-attn", "arch=5"]], ids=["hidden_size", "H_cycles", "arch=5"])
def test_train_overrides_out_of_range_are_refused_before_anything(overrides, sudoku4, tmp_path, capsys):
    out = tmp_path / "runs"
    rc, err = _cli(capsys, "train", f"data_path={sudoku4}", f"out_dir={out}", "max_steps=1", *overrides)
    assert rc == 2 and "arch" in err and not out.exists(), err


def test_absurd_but_in_range_shape_is_refused_before_allocating():
    from hrmkit.config import ArchConfig
    from hrmkit.models import build_model

    arch = ArchConfig(name="hrm", hidden_size=limits.MAX_HIDDEN_SIZE, num_heads=512, H_layers=64, L_layers=64)
    with pytest.raises(HrmkitError, match="GiB"):
        build_model(arch, seq_len=81, vocab_size=11, num_puzzle_identifiers=limits.MAX_PUZZLE_IDENTIFIERS)


def test_sudoku_csv_rating_beyond_int32_is_refused(tmp_path, capsys):
    csv = tmp_path / "p.csv"
    solution = "1234341221434321"
    rows = [f"gen,{solution[:i]}.{solution[i + 1:]},{solution},{rating}"  # one blank: a unique solution
            for i, rating in enumerate(["12345678901234567890123", "1", "2", "3"])]
    csv.write_text("source,q,a,rating\n" + "\n".join(rows) + "\n")
    out = tmp_path / "ds"
    rc, err = _cli(capsys, "data", "sudoku", "--out", out, "--from-csv", csv, "--workers", "1")
    assert rc == 2 and "p.csv: row 2" in err and "rating" in err and not out.exists(), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]


def test_metrics_jsonl_with_a_bad_byte_is_read_and_named(sudoku4_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(sudoku4_run, run)
    log = run / "metrics.jsonl"
    good = len(log.read_bytes().splitlines())
    with open(log, "ab") as f:
        f.write(b'{"global_step": 3, "note": "\xff"}\n')
    warnings = []
    assert len(read_jsonl(log, warn=warnings.append)) == good
    assert "metrics.jsonl" in warnings[0] and f"line {good + 1}" in warnings[0]
    rc, err = _cli(capsys, "export", run, "--out", tmp_path / "exp")  # its card reads the run's evaluations
    assert rc == 0 and "metrics.jsonl" in err, err
    from hrmkit.eval.report import load_metrics_jsonl

    assert load_metrics_jsonl(log)


# --- the Python API ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(sudoku4_run):
    return hrmkit.load(sudoku4_run)


def test_ragged_rows_name_the_row(model):
    rows = [[1] * 16, [1] * 16, [1] * 15]
    with pytest.raises(HrmkitError, match="row 2 has 15 tokens"):
        model.predict(rows)


def test_fractional_batch_size_is_refused(model):
    with pytest.raises(HrmkitError, match="batch_size"):
        model.predict(np.ones((2, 16), np.int64), batch_size=1.5)


def test_decode_of_a_wrong_length_names_the_expected_length(model):
    with pytest.raises(HrmkitError, match="seq_len 16"):
        model.decode([1, 2, 3])


def test_numpy_integer_segments_are_accepted(model):
    out = model.predict(np.ones((2, 16), np.int64), segments=np.int64(2))
    assert out.segments == 2 and out.q_halt.shape == (2, 2)


def test_predict_takes_segments_by_name_only(model):
    """`steps` (optimizer steps elsewhere) is not an alias of the ACT segment count."""
    with pytest.raises(TypeError):
        model.predict(np.ones((2, 16), np.int64), steps=2)
    with pytest.raises(TypeError):
        model.predict(np.ones((2, 16), np.int64), None, 2)


def test_uint64_token_is_shown_as_given(model):
    x = np.ones((1, 16), np.uint64)
    x[0, 3] = 2**63 + 5
    with pytest.raises(HrmkitError, match=rf"inputs\[0\]\[3\]: token {2**63 + 5} outside"):
        model.predict(x)


# --- limits where work explodes ---------------------------------------------------------------------------

def test_segments_beyond_the_maximum_are_refused(sudoku4_run, puzzle, model, capsys):
    rc, err = _cli(capsys, "solve", "--checkpoint", sudoku4_run, puzzle, "--segments", "100000")
    assert rc == 2 and "--segments" in err and str(limits.MAX_SEGMENTS) in err, err
    with pytest.raises(HrmkitError, match="segments"):
        model.predict(np.ones((1, 16), np.int64), segments=100000)


@pytest.mark.parametrize("command", [["arc", "--tasks-dir", "nowhere"], ["sudoku", "--size", "4", "--train", "10",
                                                                          "--test", "4"]])
def test_num_aug_beyond_the_maximum_is_refused_with_nothing_left(command, tmp_path, capsys):
    out = tmp_path / "ds"
    rc, err = _cli(capsys, "data", *command, "--out", out, "--num-aug", "100000000")
    assert rc == 2 and "--num-aug" in err and str(limits.MAX_NUM_AUG) in err, err
    assert list(tmp_path.iterdir()) == []


def test_check_int_accepts_numpy_integers_and_refuses_the_rest():
    assert limits.check_int(np.uint8(7), "x", 0, 10) == 7
    for bad in (True, 1.5, "3", None, 11, -1):
        with pytest.raises(HrmkitError, match="^x: "):
            limits.check_int(bad, "x", 0, 10)


def test_onnx_runner_checks_the_card_hashes_of_its_folder(sudoku4_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from hrmkit.deploy.onnx_runner import ACTRunner

    folder = export_model(sudoku4_run, tmp_path / "onnx", "onnx").folder
    assert ACTRunner(folder).halt_max_steps == 3
    config = folder / "config.json"
    config.write_text(config.read_text() + " ")
    with pytest.raises(HrmkitError, match="config.json.*README.md"):
        ACTRunner(folder)
