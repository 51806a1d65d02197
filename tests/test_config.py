import pytest
import yaml

from hrmkit.config import TrainConfig
from hrmkit.errors import HrmkitError
from hrmkit.presets import TRAIN_PRESETS, resolve_config
from hrmkit.train.lr_schedule import cosine_with_warmup


def test_preset_then_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.002\narch:\n  L_cycles: 3\n")
    cfg = resolve_config(preset="demo", config_file=str(f), overrides=["arch.L_cycles=6", "max_steps=7"])
    assert cfg.lr == 0.002  # file beats preset
    assert cfg.arch.L_cycles == 6 and isinstance(cfg.arch.L_cycles, int)  # override beats file
    assert cfg.max_steps == 7
    assert cfg.arch.hidden_size == TRAIN_PRESETS["demo"]["arch"]["hidden_size"]
    assert cfg.preset == "demo"


@pytest.mark.parametrize("override,fragment", [
    (["arch.L_cycles=abc"], "arch.L_cycles='abc'"),
    (["no_such_key=1"], "no_such_key"),
    (["arch.pos_encodings=sinus"], "arch.pos_encodings='sinus'"),
    (["lr"], "key=value"),
])
def test_bad_overrides_name_key_and_value(override, fragment):
    with pytest.raises(HrmkitError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        resolve_config(overrides=override)


def test_bad_preset_and_file(tmp_path):
    with pytest.raises(HrmkitError, match="unknown preset 'nope'"):
        resolve_config(preset="nope")
    f = tmp_path / "bad.yaml"
    f.write_text("- a list\n")
    with pytest.raises(HrmkitError, match="bad.yaml"):
        resolve_config(config_file=str(f))


def test_schedule_warmup_then_cosine_to_min_ratio():
    lrs = [cosine_with_warmup(s, 1.0, 10, 110, 0.1) for s in range(0, 111)]
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55)  # half-way through the cosine
    assert lrs[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert cosine_with_warmup(500, 1.0, 10, 110, 1.0) == pytest.approx(1.0)  # constant after warmup


def test_model_preset_is_the_arch_base_and_arch_keys_override_it():
    cfg = resolve_config(preset="demo", overrides=["model=trm-attn", "arch.L_cycles=4"])
    assert cfg.arch.name == "trm" and cfg.arch.hidden_size == 512  # the demo's arch gives way to the model preset
    assert cfg.arch.L_cycles == 4
    resumed = resolve_config(base=cfg.model_dump(), overrides=["max_steps=5"])
    assert resumed.arch == cfg.arch  # a resumed run keeps the arch it was trained with
    with pytest.raises(HrmkitError, match="unknown model preset 'nope'"):
        resolve_config(overrides=["model=nope"])


def test_demo_4x4_preset_is_the_first_demo_recipe():
    cfg = resolve_config(preset="demo-4x4")
    assert cfg.preset == "demo-4x4" and cfg.data_path == "data/sudoku-4x4-demo"
    assert cfg.demo_data.model_dump() == {"size": 4, "train": 3000, "test": 1000, "seed": 0, "num_aug": 0,
                                          "max_clues": None, "disjoint_solutions": False}
    a = cfg.arch
    assert (a.name, a.hidden_size, a.num_heads, a.H_layers, a.L_layers, a.H_cycles, a.L_cycles) == ("hrm", 64, 4, 2, 2, 2, 2)
    assert (a.halt_max_steps, a.puzzle_emb_ndim, a.pos_encodings) == (4, 64, "rope")
    assert (cfg.global_batch_size, cfg.max_steps, cfg.max_time_s, cfg.lr, cfg.lr_warmup_steps, cfg.lr_min_ratio) == \
        (64, 4500, 540, 2e-3, 100, 0.1)


def test_demo_preset_holds_out_solutions():
    from hrmkit.presets import get_preset

    cfg = resolve_config(preset="demo")
    assert cfg.demo_data.disjoint_solutions and cfg.demo_data.size == 6
    assert get_preset("demo") == cfg.arch and get_preset("demo-4x4") == resolve_config(preset="demo-4x4").arch


def test_an_old_config_with_the_loss_name_still_loads(tmp_path):
    """Run folders, checkpoints and exports written before `arch.loss.name` was dropped hold
    `loss: {name: ACTLossHead, ...}`: the key is accepted and ignored."""
    old = resolve_config(preset="demo").model_dump()
    old["arch"]["loss"] = {"name": "ACTLossHead", "loss_type": "softmax_cross_entropy", "label_smoothing": 0.0}
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump(old))
    for cfg in (resolve_config(config_file=str(f)), resolve_config(base=yaml.safe_load(f.read_text())),
                TrainConfig.model_validate(old)):
        assert cfg.arch.loss.loss_type == "softmax_cross_entropy" and "name" not in cfg.arch.loss.model_dump()
    with pytest.raises(HrmkitError, match="arch.loss.no_such_key"):
        resolve_config(overrides=["arch.loss.no_such_key=1"])  # other unknown keys are still refused
