"""`hrm data ...`: build and inspect puzzle datasets.

    hrm data sudoku --out DIR [--size 4|6|9] [--train N] [--test M] [--seed S] [--num-aug K]
                    [--min-clues C] [--max-clues C] [--min-blanks B] [--min-rating R] [--max-rating R]
                    [--disjoint-solutions] [--workers W] [--force]
    hrm data sudoku --preset extreme --out DIR        (9x9, 1000 train, 10000 test, num-aug 1000, rating >= 2)
    hrm data sudoku --out DIR --from-csv FILE [--test-csv FILE | --test-fraction F] [--train N] [--test M]
                    [--num-aug K] [--min-rating R] [--no-verify-unique]
    hrm data maze --out DIR [--size 30] [--train 1000] [--test 1000] [--min-path-length L] [--braid P]
                  [--aug] [--seed S] [--workers W] [--force]
    hrm data maze --out DIR --from-csv FILE [--test-csv FILE | --test-fraction F] [--aug]
    hrm data grid --from-jsonl TRAIN.jsonl --test-jsonl TEST.jsonl --out DIR [--num-aug K]
                  [--aug dihedral,colors|none] [--seed S] [--force]
    hrm data inspect DIR [--show K] [--png OUT]
    hrm data arc ...                                   (registered from hrmkit.data.arc_cli when present)

Bad values raise HrmkitError (exit code 2, nothing written). `--out` must not exist or be an empty folder,
unless `--force` (then it is replaced once the new dataset is complete). Registered by hrmkit.cli.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from hrmkit.errors import HrmkitError
from hrmkit.limits import MAX_NUM_AUG, check_int

SUDOKU_PRESETS = {
    "extreme": dict(size=9, train=1000, test=10000, num_aug=1000, min_rating=2),
}


def _check_out(args: argparse.Namespace) -> Path:
    """Validate --out; an existing empty folder (or any folder with --force) is replaced: sets args.force."""
    p = Path(args.out)
    if p.exists():
        if not p.is_dir():
            raise HrmkitError(f"--out {p}: exists and is not a folder")
        if any(p.iterdir()) and not args.force:
            raise HrmkitError(f"--out {p}: folder exists and is not empty (use --force to replace it)")
        args.force = True
    return p


def _nonneg(name: str, value: int | None, minimum: int = 0) -> None:
    if value is not None and value < minimum:
        raise HrmkitError(f"{name} must be >= {minimum}, got {value}")


def _peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024


def _cmd_sudoku(args: argparse.Namespace) -> int:
    from hrmkit.data import sudoku

    t0 = time.time()
    if args.preset is not None:
        if args.preset not in SUDOKU_PRESETS:
            raise HrmkitError(f"--preset must be one of {sorted(SUDOKU_PRESETS)}, got {args.preset!r}")
        for k, v in SUDOKU_PRESETS[args.preset].items():
            if getattr(args, k) is None:
                setattr(args, k, v)
    if args.size is not None and args.size not in sudoku.BOXES:
        raise HrmkitError(f"--size must be one of 4, 6, 9, got {args.size}")
    for name in ("train", "test", "num_aug", "min_clues", "max_clues", "min_blanks", "min_rating", "max_rating"):
        _nonneg("--" + name.replace("_", "-"), getattr(args, name))
    _nonneg("--train", args.train, 1)
    _nonneg("--test", args.test, 1)
    _nonneg("--workers", args.workers, 1)
    if args.num_aug is not None:
        check_int(args.num_aug, "--num-aug", 0, MAX_NUM_AUG)
    out = _check_out(args)
    num_aug = args.num_aug or 0
    if args.from_csv:
        if args.test_csv and args.test_fraction is not None:
            raise HrmkitError("give either --test-csv or --test-fraction, not both")
        if args.disjoint_solutions:
            raise HrmkitError("--disjoint-solutions applies to generated puzzles, not to --from-csv")
        res = sudoku.build_from_csv(
            out, Path(args.from_csv), Path(args.test_csv) if args.test_csv else None,
            args.test_fraction if args.test_fraction is not None else 0.2, args.size, args.train, args.test,
            args.seed, num_aug, args.min_rating, not args.no_verify_unique, args.workers, args.force,
        )
        if res["test_dropped"]:
            print(f"dropped {res['test_dropped']} test puzzles that also occur in train")
    else:
        if args.test_csv:
            raise HrmkitError("--test-csv needs --from-csv")
        size = args.size or 9
        n2 = size * size
        max_clues = args.max_clues
        if args.min_blanks is not None:
            if args.min_blanks > n2:
                raise HrmkitError(f"--min-blanks must be <= {n2} for size {size}, got {args.min_blanks}")
            max_clues = min(n2 - args.min_blanks, max_clues if max_clues is not None else n2)
        if args.min_clues is not None and max_clues is not None and args.min_clues > max_clues:
            raise HrmkitError(f"--min-clues {args.min_clues} exceeds the clue maximum {max_clues}")
        if args.min_rating is not None and args.max_rating is not None and args.min_rating > args.max_rating:
            raise HrmkitError(f"--min-rating {args.min_rating} exceeds --max-rating {args.max_rating}")
        res = sudoku.build_generated(
            out, size, args.train or 1000, args.test or 1000, args.seed, num_aug, args.min_clues or 0, max_clues,
            args.min_rating or 0, args.max_rating, args.workers, args.force, args.preset, args.disjoint_solutions,
        )
    box = res["box"]
    n = box[0] * box[1]
    for split in ("train", "test"):
        data = res[split]
        clues = (data.puzzles > 0).sum(axis=1)
        print(f"{split}: {len(data)} puzzles, clues mean {clues.mean():.1f} (min {clues.min()}, max {clues.max()}), "
              f"blank cells {100 * (1 - clues.mean() / (n * n)):.1f}%")
        if (data.ratings >= 0).any():
            print(sudoku.format_histogram(f"{split} rating histogram", data.ratings))
    print(f"test solutions that also occur in train (incl. augmented versions): {res['test_solutions_in_train']} "
          f"of {len(res['test'])}")
    print(f"wrote {out} ({n}x{n}, box {box[0]}x{box[1]}, train groups x {1 + num_aug} versions) "
          f"in {time.time() - t0:.1f}s, peak RSS {_peak_rss_mb():.0f} MB")
    return 0


def _cmd_maze(args: argparse.Namespace) -> int:
    from hrmkit.data import maze

    t0 = time.time()
    _nonneg("--size", args.size, 5)
    _nonneg("--train", args.train, 1)
    _nonneg("--test", args.test, 1)
    _nonneg("--min-path-length", args.min_path_length, 0)
    _nonneg("--workers", args.workers, 1)
    if not 0.0 <= args.braid <= 1.0:
        raise HrmkitError(f"--braid must be in [0, 1], got {args.braid}")
    out = _check_out(args)
    if args.from_csv:
        if args.test_csv and args.test_fraction is not None:
            raise HrmkitError("give either --test-csv or --test-fraction, not both")
        res = maze.build_from_csv(
            out, Path(args.from_csv), Path(args.test_csv) if args.test_csv else None,
            args.test_fraction if args.test_fraction is not None else 0.2, args.train, args.test, args.seed,
            args.aug, args.force,
        )
    else:
        if args.test_csv:
            raise HrmkitError("--test-csv needs --from-csv")
        if args.size > 64:
            raise HrmkitError(f"--size must be <= 64, got {args.size}")
        res = maze.build_generated(
            out, args.size, args.train if args.train is not None else 1000,
            args.test if args.test is not None else 1000, args.seed, args.min_path_length or 0, args.braid,
            args.aug, args.workers, args.force,
        )
    for split in ("train", "test"):
        lengths = res[split].path_lengths
        print(f"{split}: {len(lengths)} mazes, shortest path length mean {lengths.mean():.1f} "
              f"(min {lengths.min()}, max {lengths.max()})")
    print(f"wrote {out} in {time.time() - t0:.1f}s, peak RSS {_peak_rss_mb():.0f} MB")
    return 0


def _cmd_grid(args: argparse.Namespace) -> int:
    from hrmkit.data import grid_jsonl

    t0 = time.time()
    check_int(args.num_aug, "--num-aug", 0, MAX_NUM_AUG)
    _nonneg("--seed", args.seed, 0)
    augmentations = grid_jsonl.parse_augmentations(args.aug)
    out = _check_out(args)
    res = grid_jsonl.build_from_jsonl(out, Path(args.from_jsonl), Path(args.test_jsonl), num_aug=args.num_aug,
                                      augmentations=augmentations, seed=args.seed, force=args.force)
    task = res["task"]
    p = task.params
    shape = (f"plain {p['height']}x{p['width']}" if p["layout"] == "plain"
             else f"canvas {p['canvas']}x{p['canvas']} (grids up to {p['height']}x{p['width']})")
    for split in ("train", "test"):
        print(f"{split}: {res[split + '_examples']} examples, {res[split + '_puzzles']} puzzles")
    named = f", {len(res['named'])} named" if res["named"] else ""
    augs = ", ".join(p["augmentations"]) or "none"
    print(f"layout {shape}, values 0..{task.num_values - 1}, seq_len {task.seq_len}, vocab {task.vocab_size}"
          f"{named}; train puzzles x {1 + args.num_aug} versions (augmentations: {augs})")
    print(f"wrote {out} in {time.time() - t0:.1f}s, peak RSS {_peak_rss_mb():.0f} MB")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from hrmkit.data import inspect

    _nonneg("--show", args.show, 0)
    print(inspect.describe(Path(args.dataset), show=args.show))
    if args.png:
        path = inspect.write_png(Path(args.dataset), Path(args.png), show=max(1, args.show))
        print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="build and inspect puzzle datasets")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    s = sub.add_parser("sudoku", help="generate Sudoku (4x4, 6x6, 9x9) with unique solutions, or import a CSV")
    s.add_argument("--out", required=True, help="output dataset folder (must not exist or be empty)")
    s.add_argument("--preset", default=None, help="'extreme': Sudoku-Extreme-like 9x9 set (1000 train, 10000 "
                   "test, --num-aug 1000, --min-rating 2); explicit options override")
    s.add_argument("--size", type=int, default=None, help="grid size 4, 6 or 9 (boxes 2x2, 2x3, 3x3); default 9")
    s.add_argument("--train", type=int, default=None, help="train puzzles (generated: default 1000; CSV: subsample)")
    s.add_argument("--test", type=int, default=None, help="test puzzles (generated: default 1000; CSV: subsample)")
    s.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same dataset (default 0)")
    s.add_argument("--num-aug", type=int, default=None, help="augmented versions per train puzzle (default 0)")
    s.add_argument("--min-clues", type=int, default=None, help="stop removing clues at this many")
    s.add_argument("--max-clues", type=int, default=None, help="stop removing clues once this many are left; "
                   "puzzles that stay above are regenerated (default: remove until minimal)")
    s.add_argument("--min-blanks", type=int, default=None, help="at least this many blank cells (= max clues n*n-B)")
    s.add_argument("--min-rating", type=int, default=None, help="keep puzzles with rating >= R (generated: solver "
                   "dead ends; CSV: its rating column)")
    s.add_argument("--max-rating", type=int, default=None, help="keep puzzles with rating <= R (generated only)")
    s.add_argument("--disjoint-solutions", action="store_true", help="generated only: skip test puzzles whose "
                   "solution grid occurs in train (augmented versions included), so the test split can only be "
                   "solved by reasoning, not recalled (an error when the grid space is too small, as for 4x4)")
    s.add_argument("--from-csv", default=None, help="import this CSV (header source,q,a,rating) instead of generating")
    s.add_argument("--test-csv", default=None, help="with --from-csv: the test split's CSV")
    s.add_argument("--test-fraction", type=float, default=None,
                   help="with --from-csv and no --test-csv: fraction of rows held out for test (default 0.2)")
    s.add_argument("--no-verify-unique", action="store_true", help="CSV: skip the per-row uniqueness solve")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all available cores)")
    s.add_argument("--force", action="store_true", help="replace a non-empty --out")
    s.set_defaults(func=_cmd_sudoku)

    m = sub.add_parser("maze", help="generate mazes with shortest-path labels, or import a CSV")
    m.add_argument("--out", required=True, help="output dataset folder (must not exist or be empty)")
    m.add_argument("--size", type=int, default=30, help="side of the square grid in cells (default 30)")
    m.add_argument("--train", type=int, default=None, help="train mazes (default 1000; CSV: subsample)")
    m.add_argument("--test", type=int, default=None, help="test mazes (default 1000; CSV: subsample)")
    m.add_argument("--min-path-length", type=int, default=None, help="hardness: keep mazes whose shortest path "
                   "from S to G takes at least L moves")
    m.add_argument("--braid", type=float, default=0.0, help="fraction of dead ends opened into loops (0 = perfect)")
    m.add_argument("--aug", action="store_true", help="8 dihedral versions per train maze (reference --aug)")
    m.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same dataset (default 0)")
    m.add_argument("--from-csv", default=None, help="import this CSV (header source,q,a,rating; charset '# SGo')")
    m.add_argument("--test-csv", default=None, help="with --from-csv: the test split's CSV")
    m.add_argument("--test-fraction", type=float, default=None,
                   help="with --from-csv and no --test-csv: fraction held out for test (default 0.2)")
    m.add_argument("--workers", type=int, default=None, help="processes (default: all available cores)")
    m.add_argument("--force", action="store_true", help="replace a non-empty --out")
    m.set_defaults(func=_cmd_maze)

    g = sub.add_parser("grid", help="import integer-grid puzzles from JSON Lines ({\"input\": grid, \"output\": "
                       "grid} a line)")
    g.add_argument("--from-jsonl", required=True, help="train examples: one JSON object a line, {\"input\": "
                   "[[int, ...], ...], \"output\": [[...]]}, optional \"puzzle\": \"name\" (examples of one name form one "
                   "puzzle)")
    g.add_argument("--test-jsonl", required=True, help="test examples, the same format; a puzzle name must occur "
                   "in the train file")
    g.add_argument("--out", required=True, help="output dataset folder (must not exist or be empty)")
    g.add_argument("--num-aug", type=int, default=0, help="augmented versions per train puzzle (default 0)")
    g.add_argument("--aug", default="dihedral,colors", help="augmentations of those versions: dihedral, colors "
                   "(permutations of the values 1.., 0 kept as background), both comma-separated, or none "
                   "(default dihedral,colors; non-square grids of one shape keep the 4 shape-keeping transforms)")
    g.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same dataset (default 0)")
    g.add_argument("--force", action="store_true", help="replace a non-empty --out")
    g.set_defaults(func=_cmd_grid)

    i = sub.add_parser("inspect", help="summarise a dataset folder and render a few puzzles")
    i.add_argument("dataset", help="dataset folder (with train/ and test/)")
    i.add_argument("--show", type=int, default=2, help="puzzles rendered per split (default 2)")
    i.add_argument("--png", default=None, help="also draw the puzzles to this PNG (the HTML report's colours; ARC grids cropped to their cells)")
    i.set_defaults(func=_cmd_inspect)

    try:  # `hrm data arc` lives in hrmkit.data.arc_cli (its own module and owner)
        from hrmkit.data.arc_cli import register_arc
    except ModuleNotFoundError as e:
        if e.name != "hrmkit.data.arc_cli":
            raise
    else:
        register_arc(sub)
