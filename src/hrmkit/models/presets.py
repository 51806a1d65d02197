"""Named architecture presets (docs/design.md §3, §4). Parameter counts at vocab 11, seq_len 81 (Sudoku), puzzle
table excluded: hrm-paper 27,275,266; trm-attn 6,828,034; transformer-baseline 27,275,266."""

from __future__ import annotations

from hrmkit.config import ArchConfig
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


def _train_preset_arch(name: str) -> ArchConfig:
    from hrmkit.config import TRAIN_PRESETS

    return ArchConfig.model_validate(TRAIN_PRESETS[name]["arch"])


# The CPU demos' models (`hrm train` with no arguments; `--preset demo-4x4`), defined with their training presets
# in config.py.
MODEL_PRESETS["demo"] = _train_preset_arch("demo")
MODEL_PRESETS["demo-4x4"] = _train_preset_arch("demo-4x4")


def get_preset(name: str) -> ArchConfig:
    """A copy of preset `name`. Raises HrmkitError listing the known presets."""
    if name not in MODEL_PRESETS:
        raise HrmkitError(f"unknown model preset {name!r}; known: {', '.join(sorted(MODEL_PRESETS))}")
    return MODEL_PRESETS[name].model_copy(deep=True)
