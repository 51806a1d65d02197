"""Presets and config resolution.

Named architectures (`MODEL_PRESETS`, chosen with `model=NAME`; docs/design.md §3, §4; parameter counts at
vocab 11, seq_len 81 (Sudoku), puzzle table excluded: hrm-paper 27,275,266; trm-attn 6,828,034;
transformer-baseline 27,275,266), training presets (`TRAIN_PRESETS`, `hrm train --preset NAME`, among them one
per published reference run: `REFERENCE_PRESETS`, `PRESET_NOTES`) and `resolve_config`, which layers defaults <
a base config < preset < YAML file < key=value overrides into a `config.TrainConfig`.

config.py holds the schemas and nothing that loads a model; this module sits above `loading` because
fine-tuning (`init_from`) takes the architecture from the checkpoint (`loading.checkpoint_arch`).
"""

from __future__ import annotations

from pydantic import ValidationError

from hrmkit.config import ArchConfig, TrainConfig, describe_errors, parse_override
from hrmkit.errors import HrmkitError

MODEL_PRESETS: dict[str, ArchConfig] = {
    # HRM paper / sapientinc config/arch/hrm_v1.yaml
    "hrm-paper": ArchConfig(name="hrm", H_cycles=2, L_cycles=2, H_layers=4, L_layers=4, hidden_size=512,
                            num_heads=8, expansion=4, halt_max_steps=16, halt_exploration_prob=0.1,
                            puzzle_emb_ndim=512, pos_encodings="rope"),
    # TRM paper, attention variant (Sudoku H3/L6; use L_cycles=4 for Maze/ARC)
    "trm-attn": ArchConfig(name="trm", H_cycles=3, L_cycles=6, H_layers=0, L_layers=2, hidden_size=512,
                           num_heads=8, expansion=4, halt_max_steps=16, halt_exploration_prob=0.1,
                           puzzle_emb_ndim=512, puzzle_emb_len=16, pos_encodings="rope", mlp_t=False,
                           no_ACT_continue=True),
    # TRM paper, MLP variant (best on Sudoku-Extreme): SwiGLU across the sequence, no positions
    "trm-mlp": ArchConfig(name="trm", H_cycles=3, L_cycles=6, H_layers=0, L_layers=2, hidden_size=512,
                          num_heads=8, expansion=4, halt_max_steps=16, halt_exploration_prob=0.1,
                          puzzle_emb_ndim=512, puzzle_emb_len=16, pos_encodings="none", mlp_t=True,
                          no_ACT_continue=True),
    # A smaller HRM for single-GPU runs
    "hrm-small": ArchConfig(name="hrm", H_cycles=2, L_cycles=2, H_layers=4, L_layers=3, hidden_size=256,
                            num_heads=8, expansion=4, halt_max_steps=8, halt_exploration_prob=0.1,
                            puzzle_emb_ndim=256, pos_encodings="rope"),
    # ARC Prize ablation: the HRM blocks (4 + 4) stacked, one pass, no ACT
    "transformer-baseline": ArchConfig(name="transformer", H_cycles=1, L_cycles=1, H_layers=4, L_layers=4,
                                       hidden_size=512, num_heads=8, expansion=4, halt_max_steps=1,
                                       halt_exploration_prob=0.0, puzzle_emb_ndim=512, pos_encodings="rope"),
}


# Presets are partial configs (nested dicts) applied before the YAML file and the key=value overrides.
TRAIN_PRESETS: dict[str, dict] = {
    # The CPU demo (`hrm train` with no arguments): a TRM with an MLP across the sequence (`mlp_t`) learns 6x6
    # Sudoku (minimal puzzles, about 72% blank cells) on a 2-core CPU in minutes; no test solution grid occurs
    # in training (`disjoint_solutions`), so the held-out score measures solving, not recall (BENCHMARKS.md).
    "demo": {
        "data_path": "data/sudoku-6x6-demo",
        "demo_data": {"size": 6, "train": 3000, "test": 1000, "seed": 0, "num_aug": 15, "disjoint_solutions": True},
        "arch": {
            "name": "trm", "hidden_size": 64, "num_heads": 4, "expansion": 4.0, "mlp_t": True,
            "H_layers": 0, "L_layers": 2, "H_cycles": 2, "L_cycles": 2, "halt_max_steps": 4,
            "halt_exploration_prob": 0.1, "no_ACT_continue": True, "puzzle_emb_ndim": 0, "puzzle_emb_len": 0,
            "pos_encodings": "none",
        },
        "global_batch_size": 64,
        "epochs": 100000,
        "eval_interval": None,
        "max_steps": 1200,
        "max_time_s": 480,
        "lr": 2e-3,
        "lr_warmup_steps": 100,
        "lr_min_ratio": 0.1,
        "weight_decay": 0.1,
        "checkpoint_every": 500,
        "log_every": 100,
        "eval_batch_size": 500,
    },
    # The first CPU demo (`--preset demo-4x4`): a small HRM learns 4x4 Sudoku (about 73% blank cells) in under 10
    # minutes, but a 4x4 grid has only 288 solutions, so every test solution also occurs in training.
    "demo-4x4": {
        "data_path": "data/sudoku-4x4-demo",
        "demo_data": {"size": 4, "train": 3000, "test": 1000, "seed": 0},
        "arch": {
            "name": "hrm", "hidden_size": 64, "num_heads": 4, "expansion": 4.0,
            "H_layers": 2, "L_layers": 2, "H_cycles": 2, "L_cycles": 2,
            "halt_max_steps": 4, "halt_exploration_prob": 0.1, "puzzle_emb_ndim": 64,
            "pos_encodings": "rope",
        },
        "global_batch_size": 64,
        "epochs": 100000,
        "eval_interval": None,
        "max_steps": 4500,
        "max_time_s": 540,
        "lr": 2e-3,
        "lr_warmup_steps": 100,
        "lr_min_ratio": 0.1,
        "weight_decay": 0.1,
        "puzzle_emb_lr": 2e-3,
        "puzzle_emb_weight_decay": 0.1,
        "checkpoint_every": 500,
        "log_every": 100,
        "eval_batch_size": 500,
    },
}

# One preset per published reference run.
# Hyperparameters from the references' configs: sapientinc/HRM config/cfg_pretrain.yaml (+ README run commands)
# and TinyRecursiveModels config/cfg_pretrain.yaml, config/arch/trm.yaml (+ README run commands); checked by
# tests/test_presets.py against values extracted from those files (tests/fixtures/reference/presets.json).
_REF_COMMON = {"global_batch_size": 768, "lr": 1e-4, "lr_min_ratio": 1.0, "lr_warmup_steps": 2000, "beta1": 0.9,
               "beta2": 0.95, "seed": 0, "lr_schedule": "cosine", "max_steps": None}
_REF_PUZZLE = {"epochs": 20000, "eval_interval": 2000, "puzzle_emb_lr": 1e-4, "weight_decay": 1.0,
               "puzzle_emb_weight_decay": 1.0}  # HRM Sudoku/Maze 1k
_REF_ARC = {"epochs": 100000, "eval_interval": 10000, "puzzle_emb_lr": 1e-2, "weight_decay": 0.1,
            "puzzle_emb_weight_decay": 0.1}
_TRM_PUZZLE = {**_REF_PUZZLE, "epochs": 50000, "eval_interval": 5000, "ema": True, "ema_rate": 0.999}
_TRM_ARC = {**_REF_ARC, "ema": True, "ema_rate": 0.999, "eval": {"arc_aggregate": True}}
REFERENCE_PRESETS: dict[str, dict] = {
    "hrm-sudoku-extreme": {**_REF_COMMON, **_REF_PUZZLE, "model": "hrm-paper",
                           "data_path": "data/sudoku-extreme-1k-aug-1000"},
    "hrm-maze-hard": {**_REF_COMMON, **_REF_PUZZLE, "model": "hrm-paper", "data_path": "data/maze-30x30-hard-1k"},
    "hrm-arc1": {**_REF_COMMON, **_REF_ARC, "model": "hrm-paper", "data_path": "data/arc1concept-aug-1000"},
    "hrm-arc2": {**_REF_COMMON, **_REF_ARC, "model": "hrm-paper", "data_path": "data/arc2-aug-1000"},
    "trm-mlp-sudoku-extreme": {**_REF_COMMON, **_TRM_PUZZLE, "model": "trm-mlp",
                               "data_path": "data/sudoku-extreme-1k-aug-1000"},
    "trm-sudoku-extreme": {**_REF_COMMON, **_TRM_PUZZLE, "model": "trm-attn",
                           "data_path": "data/sudoku-extreme-1k-aug-1000"},
    "trm-maze-hard": {**_REF_COMMON, **_TRM_PUZZLE, "model": "trm-attn", "arch": {"L_cycles": 4},
                      "data_path": "data/maze-30x30-hard-1k"},
    "trm-arc1": {**_REF_COMMON, **_TRM_ARC, "model": "trm-attn", "arch": {"L_cycles": 4},
                 "data_path": "data/arc1concept-aug-1000"},
    "trm-arc2": {**_REF_COMMON, **_TRM_ARC, "model": "trm-attn", "arch": {"L_cycles": 4},
                 "data_path": "data/arc2concept-aug-1000"},
}
# What each reference run reported and took (papers: HRM arXiv 2506.21734 Fig. 1, TRM arXiv 2510.04871 Tables
# 4-5; compute: the references' READMEs), and the hrmkit command that builds its data.
_SUDOKU_DATA = ("hrm data sudoku --from-csv DIR/train.csv --test-csv DIR/test.csv --train 1000 --num-aug 1000 "
                "--out data/sudoku-extreme-1k-aug-1000  (DIR: the sapientinc/sudoku-extreme CSVs)")
_MAZE_DATA = ("hrm data maze --from-csv DIR/train.csv --test-csv DIR/test.csv --out data/maze-30x30-hard-1k  (DIR: the "
              "sapientinc/maze-30x30-hard-1k CSVs; TRM's README adds the 8 dihedral versions: --aug)")
_ARC1_DATA = "hrm data arc --version 1 --tasks-dir ConceptARC/corpus --out data/arc1concept-aug-1000"
PRESET_NOTES: dict[str, dict[str, str]] = {
    "hrm-sudoku-extreme": {"published": "55.0% exact (Sudoku-Extreme)", "compute": "~10 min on 8 GPUs (~10 h on an "
                           "RTX 4070 laptop at batch 384)", "data": _SUDOKU_DATA},
    "hrm-maze-hard": {"published": "74.5% exact (Maze-Hard)", "compute": "~1 h on 8 GPUs", "data": _MAZE_DATA},
    "hrm-arc1": {"published": "40.3% pass@2 (ARC-AGI-1; ARC Prize semi-private: 32%)", "compute": "~24 h on 8 GPUs",
                 "data": _ARC1_DATA},
    "hrm-arc2": {"published": "5.0% pass@2 (ARC-AGI-2; ARC Prize semi-private: 2%)", "compute": "~24 h on 8 GPUs",
                 "data": "hrm data arc --version 2 --out data/arc2-aug-1000"},
    "trm-mlp-sudoku-extreme": {"published": "87.4% exact (Sudoku-Extreme)", "compute": "< 36 h on 1 L40S",
                               "data": _SUDOKU_DATA},
    "trm-sudoku-extreme": {"published": "74.7% exact (Sudoku-Extreme)", "compute": "< 36 h on 1 L40S", "data": _SUDOKU_DATA},
    "trm-maze-hard": {"published": "85.3% exact (Maze-Hard)", "compute": "< 24 h on 4 L40S", "data": _MAZE_DATA},
    "trm-arc1": {"published": "44.6% pass@2 (ARC-AGI-1, votes aggregated over evaluations)", "compute": "~3 days on 4 H100",
                 "data": _ARC1_DATA},
    "trm-arc2": {"published": "7.8% pass@2 (ARC-AGI-2, votes aggregated over evaluations)", "compute": "~3 days on 4 H100",
                 "data": "hrm data arc --version 2 --tasks-dir ConceptARC/corpus --out data/arc2concept-aug-1000"},
}
TRAIN_PRESETS.update(REFERENCE_PRESETS)
TRAIN_PRESETS["hrm-sudoku-extreme-1k"] = TRAIN_PRESETS["hrm-sudoku-extreme"]  # earlier names
TRAIN_PRESETS["hrm-arc"] = TRAIN_PRESETS["hrm-arc1"]


def preset_table() -> str:
    """One paragraph per reference preset: published score, reference compute, the command building its data."""
    return "\n".join(f"  {name}: {n['published']}; reference compute {n['compute']}\n    data: {n['data']}"
                     for name, n in PRESET_NOTES.items())


# The CPU demos' models (`hrm train` with no arguments; `--preset demo-4x4`), defined with their training presets.
MODEL_PRESETS["demo"] = ArchConfig.model_validate(TRAIN_PRESETS["demo"]["arch"])
MODEL_PRESETS["demo-4x4"] = ArchConfig.model_validate(TRAIN_PRESETS["demo-4x4"]["arch"])


def get_preset(name: str) -> ArchConfig:
    """A copy of preset `name`. Raises HrmkitError listing the known presets."""
    if name not in MODEL_PRESETS:
        raise HrmkitError(f"unknown model preset {name!r}; known: {', '.join(sorted(MODEL_PRESETS))}")
    return MODEL_PRESETS[name].model_copy(deep=True)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(
    preset: str | None = None, config_file: str | None = None, overrides: list[str] | None = None,
    base: dict | None = None, base_source: str = "the resumed run's config",
) -> TrainConfig:
    """Build the TrainConfig: defaults < `base` (e.g. a resumed run's config, read from `base_source`) < preset <
    YAML file < overrides.

    Raises HrmkitError naming the preset, file, key and value at fault.
    """
    import yaml

    merged: dict = dict(base or {})
    user: dict = {}  # what the YAML file and the overrides set: beats the `model` architecture preset
    if preset is not None:
        if preset not in TRAIN_PRESETS:
            raise HrmkitError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(TRAIN_PRESETS))}")
        merged = _deep_merge(merged, TRAIN_PRESETS[preset])
        merged["preset"] = preset
    given = ((base_source, base), (config_file, config_file), ("overrides", overrides))
    source = " + ".join(name for name, value in given if value) or "defaults"
    if config_file is not None:
        try:
            with open(config_file) as f:
                loaded = yaml.safe_load(f) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise HrmkitError(f"{config_file}: cannot read config: {e}") from None
        if not isinstance(loaded, dict):
            raise HrmkitError(f"{config_file}: expected a mapping of keys, got {type(loaded).__name__}")
        user = _deep_merge(user, loaded)
    for item in overrides or []:
        user = _deep_merge(user, parse_override(item))
    merged = _deep_merge(merged, user)
    if merged.get("init_from") and not merged.get("model") and not user.get("arch") and not (base or {}).get("arch"):
        from hrmkit.loading import checkpoint_arch  # fine-tune with the checkpoint's architecture

        merged["arch"] = checkpoint_arch(merged["init_from"])
    if isinstance(merged.get("model"), str):
        arch = get_preset(merged["model"]).model_dump()
        own = TRAIN_PRESETS.get(preset) or {}  # a preset's arch keys adjust its own `model` (trm-arc1: L_cycles 4)
        layers = (base or {}, own if own.get("model") == merged["model"] else {}, user)
        for layer in layers:
            given = layer.get("arch") or {}
            if not isinstance(given, dict):  # `arch=5`: say so here rather than fail merging it into the preset
                raise HrmkitError(f"invalid config ({source}): arch={given!r}: expected a mapping of arch.* keys "
                                  f"(for example arch.L_cycles=4)")
            arch = _deep_merge(arch, given)
        merged["arch"] = arch
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as e:
        raise HrmkitError(f"invalid config ({source}): {describe_errors(e)}") from None
