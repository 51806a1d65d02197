"""ARC Prize on Kaggle, offline: adapt a pretrained hrmkit/reference checkpoint to the hidden test tasks and
write /kaggle/working/submission.json within the notebook's time limit.

In the notebook (no internet; README "hrm adapt": offline install):

    !pip install --no-index --find-links /kaggle/input/hrmkit-wheels hrmkit
    !python /kaggle/input/hrmkit-wheels/kaggle_arc.py

Adjust the paths below to the names of your uploaded datasets. The submission is written first from the
un-adapted model's votes and replaced atomically when adaptation finishes, so a notebook stopped by the time
limit still has a valid file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

COMPETITION = Path("/kaggle/input/arc-prize-2025")
CHALLENGES = COMPETITION / "arc-agi_test_challenges.json"
CHECKPOINT = Path("/kaggle/input/hrmkit-arc-checkpoint")  # a run folder, RUN/best, an export, or a reference step_N
WORK = Path("/kaggle/working")
OUT = WORK / "adapt"
TIME_BUDGET_S = 11 * 3600  # the competition allows 12 h of GPU time; keep an hour for the rest of the notebook
OVERRIDES = [  # adaptation settings for one GPU (hrm adapt --help lists the defaults; any `hrm train` key)
    "global_batch_size=256", "max_steps=20000", "lr=1e-4", "puzzle_emb_lr=1e-2", "checkpoint_every=1000",
]


def main() -> int:
    from hrmkit.cli import main as hrm

    args = ["adapt", "--checkpoint", str(CHECKPOINT), "--tasks", str(CHALLENGES), "--out", str(OUT),
            "--num-aug", "1000", "--time-budget", str(TIME_BUDGET_S), *OVERRIDES]
    solutions = CHALLENGES.with_name(CHALLENGES.name.replace("challenges", "solutions"))
    if solutions.is_file():  # the public evaluation set: also report pass@k before and after adaptation
        args[args.index("--out"):args.index("--out")] = ["--solutions", str(solutions)]
    rc = hrm(args)
    if (OUT / "submission.json").is_file():
        shutil.copyfile(OUT / "submission.json", WORK / "submission.json")
    return rc


if __name__ == "__main__":
    sys.exit(main())
