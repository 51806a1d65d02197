"""`hrm solve --checkpoint PATH INPUT`: run a trained model on one puzzle and show its answer.

    hrm solve --checkpoint RUN "1...3....1..2..."        a Sudoku string ('.' or '0' blank; 16, 36 or 81 cells)
    hrm solve --checkpoint RUN maze.txt                  a maze text file ('#', ' ', 'S', 'G')
    hrm solve --checkpoint RUN task.json                 an ARC task: every augmented version voted, top 2 shown
    hrm solve --checkpoint RUN grid.json                 a grid puzzle ({"input": grid} or a bare grid), or any
                                                         registered task's text form (`Task.parse_text`)
    hrm solve ... --show-segments                        the grid after every ACT segment, changed cells marked
    hrm solve ... --gif OUT.gif                          the same as an animation
    hrm solve ... --segments 16 --tta 8                  think 16 segments, vote over 8 augmented versions

What INPUT is, the checkpoint decides (the task it was trained on, which it records). Malformed input is refused
with `hrm: error: ...` and exit code 2 before the model runs; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hrmkit.errors import HrmkitError
from hrmkit.limits import MAX_SEGMENTS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "solve", help="run a trained model on one puzzle (Sudoku, maze, ARC task, grid, ...) and show its answer",
        description="Run a trained model on one puzzle: print the answer as a grid, the ACT segments run and "
        "where the halting rule stopped, and whether the answer is right (Sudoku: a valid solution keeping every "
        "clue; maze: a path connected from S to G; ARC: the top-2 voted answers over every augmented version, "
        "checked against the test output when the task file has one; other tasks: their own check, if they have "
        "rules).",
    )
    p.add_argument("input", metavar="INPUT", help="a Sudoku string (or a file holding one), a maze text file, an "
                   "ARC task JSON file, a grid JSON file ({\"input\": grid} or a bare grid), or a registered task's "
                   "text form; '-' reads standard input")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="a run folder (its newest checkpoint), RUN/best/ or a checkpoint file")
    p.add_argument("--show-segments", action="store_true", help="print the grid after every ACT segment, changed cells marked "
                   "(ARC: of each test input's identity version)")
    p.add_argument("--gif", metavar="OUT.gif", help="write the input and the grid after every segment as an animated "
                   "GIF (ARC: the first test input's identity version)")
    p.add_argument("--segments", type=int, default=None, metavar="N",
                   help="ACT segments to run, 1..%d (default: the model's halt_max_steps, as in evaluation)" % MAX_SEGMENTS)
    p.add_argument("--tta", type=int, default=None, metavar="K",
                   help="vote over K augmented versions of the puzzle (the task's augmentations: Sudoku digit "
                        "relabelling, transpose, band and stack shuffles; mazes dihedral, K <= 8; grids dihedral "
                        "and colours) and print the vote table")
    p.add_argument("--data", metavar="DIR", help="the dataset the model was trained on, when its data_path does not "
                   "lead there (ARC reads its identifiers.json)")
    p.add_argument("--task-id", default=None, help="ARC: the task id (default: the file name without .json)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="ARC: versions per forward pass")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where to run (default: cpu)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights even when the checkpoint holds "
                   "an EMA copy (default: EMA when present)")
    p.set_defaults(func=_solve)


def _read_input(arg: str, task: Any) -> tuple[Any, str]:
    """(INPUT as the task's natural form (`Task.parse_text`) or, for ARC, the task file's path; the name used
    in errors)."""
    if arg == "-":
        if task.votes_over_dataset_versions:
            raise HrmkitError("INPUT -: this checkpoint solves ARC tasks; give a task JSON file, not standard input")
        return task.parse_text(sys.stdin.read(), "INPUT (standard input)"), "INPUT (standard input)"
    path = Path(arg)
    if task.votes_over_dataset_versions:
        if not path.is_file():
            raise HrmkitError(f"INPUT {arg!r}: this checkpoint solves ARC tasks; give a task JSON file")
        return path, str(path)
    if path.is_file():
        try:
            return task.parse_text(path.read_text(), str(path)), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise HrmkitError(f"{path}: cannot read it as text ({e})") from None
    if not task.inline_input and "\n" not in arg:
        raise HrmkitError(f"INPUT {arg!r}: no such file; this checkpoint solves {task.title} puzzles, give a "
                          f"{task.title} text file")
    return task.parse_text(arg, "INPUT"), "INPUT"


def _validate_options(args: argparse.Namespace) -> None:
    from hrmkit.eval.rollout import check_segments
    from hrmkit.eval.tta import check_versions

    check_segments(args.segments, "--segments")
    if args.tta is not None:
        check_versions(args.tta)
    if args.batch_size < 1:
        raise HrmkitError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.gif:
        out = Path(args.gif)
        if out.suffix.lower() != ".gif":
            raise HrmkitError(f"--gif {out}: the file name must end in .gif")
        if out.is_dir():
            raise HrmkitError(f"--gif {out}: is a folder")


def _solve(args: argparse.Namespace) -> int:
    from hrmkit.deploy.api import load
    from hrmkit.deploy.solve import solve_arc, solve_grid
    from hrmkit.tasks.arc import read_arc_task

    _validate_options(args)
    model = load(args.checkpoint, args.device, use_ema=not args.raw_weights, data=args.data)
    kind = model.task.require_natural_form(str(model.path))
    content, where = _read_input(args.input, kind)
    if kind.votes_over_dataset_versions:
        if args.tta is not None:
            raise HrmkitError("--tta: an ARC task is always voted over every augmented version the model has a puzzle "
                              "embedding for; drop --tta")
        task = read_arc_task(content, args.task_id)
        result = solve_arc(model, task, args.segments, args.batch_size)
        runs = [t.thinking for t in result.tests]
        text, obj = _arc_report(model, result, args.show_segments)
    else:
        result = solve_grid(model, content, args.segments, where, tta=args.tta)
        runs = [result.thinking]
        text, obj = _grid_report(model, result, args.show_segments)
    gif_error = None
    if args.gif:
        first = result.tests[0] if kind.votes_over_dataset_versions else result
        gif_error = _write_gif(args.gif, kind, first.input_grid, runs[0])
        obj["gif"] = None if gif_error else str(args.gif)
        if gif_error:
            obj["gif_error"] = gif_error
        else:
            text += f"\nwrote {args.gif} ({runs[0].segments} segments)"
    print(json.dumps(obj) if args.json else text, flush=True)
    if gif_error:  # the answer above stands; only the animation is missing
        print(f"hrm: error: --gif not written: {gif_error}", file=sys.stderr, flush=True)
        return 2
    return 0


def _write_gif(path: str, kind: Any, input_grid: Any, thinking: Any) -> str | None:
    """Write the thinking animation to `path`; the reason it failed (naming the file), or None. A failed
    animation must not cost the answer already computed."""
    from hrmkit.data import render
    from hrmkit.fsutil import atomic_write_bytes

    try:
        atomic_write_bytes(path, render.gif_bytes(_gif_tiles(kind, input_grid, thinking)))
    except HrmkitError as e:
        return str(e)
    except OSError as e:
        return f"{e.filename or path}: {e.strerror or e}"
    return None


# ------------------------------------------------------------------------------------------------ text

def _header(model: Any) -> str:
    return (f"model: {model.path} ({model.config.arch.name}, {model.num_parameters:,} parameters, step {model.step}, "
            f"{model.kind})")


def _halting_line(t: Any) -> str:
    k = t.halt_step
    q = f"q_halt {t.q_halt[k - 1]:.2f}" + (f" vs q_continue {t.q_continue[k - 1]:.2f}" if t.q_continue else "")
    said = ("the halting rule said stop after segment " f"{k} ({q})" if _wants_halt(t, k - 1)
            else f"the halting rule never said stop ({q} at the last segment)")
    return f"ACT: ran {t.segments} segment{'s' * (t.segments != 1)}; {said}."


def _wants_halt(t: Any, i: int) -> bool:
    from hrmkit.halting import halting_decisions

    return bool(halting_decisions(t.q_halt[i], t.q_continue[i] if t.q_continue else None))


def _side_by_side(blocks: list[tuple[str, list[str]]], gap: str = "    ") -> list[str]:
    widths = [max([len(title)] + [len(s) for s in lines]) for title, lines in blocks]
    height = max(len(lines) for _, lines in blocks)
    rows = [gap.join(title.ljust(w) for (title, _), w in zip(blocks, widths)).rstrip()]
    for i in range(height):
        rows.append(gap.join((lines[i] if i < len(lines) else "").ljust(w) for (_, lines), w in zip(blocks, widths)).rstrip())
    return rows


def _segments_text(kind: Any, t: Any) -> list[str]:
    from hrmkit.data import render

    lines = []
    for i, (grid, marked) in enumerate(t.frames):
        n = "?" if marked is None else int(marked.sum())
        q = f"q_halt {t.q_halt[i]:.2f}" + (f", q_continue {t.q_continue[i]:.2f}" if t.q_continue else "")
        rule = "halt" if _wants_halt(t, i) else "continue"
        lines.append(f"segment {i + 1}/{t.segments}: {q} -> {rule}; {n} cell{'s' * (n != 1)} changed"
                     + (" (marked)" if n else ""))
        lines += ["  " + s for s in render.grid_text(grid, kind, marked=marked if marked is not None and marked.any() else None)]
    return lines


def _grid_report(model: Any, r: Any, show_segments: bool) -> tuple[str, dict]:
    from hrmkit.data import render

    lines = [_header(model), ""]
    lines += _side_by_side([(f"{r.task.size_text(r.input_grid)} {r.task.name}", render.grid_text(r.input_grid, r.task)),
                            ("answer", render.grid_text(r.answer_grid, r.task))])
    lines += ["", _halting_line(r.thinking)]
    obj: dict[str, Any] = {"kind": r.task.name, "answer": r.answer, "segments": r.thinking.segments,
                           "halt_step": r.thinking.halt_step, "q_halt": r.thinking.q_halt,
                           "q_continue": r.thinking.q_continue}
    if r.check is not None:
        lines.append(f"Answer: {r.check.verdict}.")
        obj.update(r.check.fields)
    if r.votes is not None:
        total = sum(v.votes for v in r.votes)
        lines += ["", f"Vote over {total} augmented versions (answers mapped back; ranked by votes, then mean "
                      f"sigmoid(q_halt)); the answer above is the top one:",
                  f"{'rank':>4}  {'votes':>5}  {'mean q':>6}  {'verifier':>8}  answer"]
        for i, v in enumerate(r.votes):
            passes = "—" if v.verified is None else "passes" if v.verified else "fails"
            lines.append(f"{i + 1:>4}  {v.votes:>5}  {v.mean_q:>6.3f}  {passes:>8}  " + _one_line(v.answer))
        obj["votes"] = [{"answer": v.answer, "votes": v.votes, "mean_q": v.mean_q, "verified": v.verified}
                        for v in r.votes]
    if show_segments:
        lines += ["", *_segments_text(r.task, r.thinking)]
    return "\n".join(lines), obj


def _one_line(answer: Any) -> str:
    """A natural-form answer on one line (text lines joined by " / ", grids as JSON)."""
    return answer.replace("\n", " / ") if isinstance(answer, str) else json.dumps(answer)


def _arc_report(model: Any, r: Any, show_segments: bool) -> tuple[str, dict]:
    from hrmkit.data import render

    lines = [_header(model), "",
             f"ARC task {r.task_id}: {len(r.tests)} test input{'s' * (len(r.tests) != 1)}, {r.versions} version"
             f"{'s' * (r.versions != 1)} each (the identity and {r.versions - 1} augmented), answers un-augmented "
             "and voted as `hrm eval` scores them"]
    tests = []
    for ti, t in enumerate(r.tests):
        blocks = [(f"test input {ti + 1} ({t.input_grid.shape[0]}x{t.input_grid.shape[1]})",
                   render.grid_text(t.input_grid, model.task))]
        for k, a in enumerate(t.answers[:2]):
            mark = "" if a.correct is None else (" RIGHT" if a.correct else " wrong")
            blocks.append((f"answer {k + 1}: {a.votes} vote{'s' * (a.votes != 1)}, mean q {a.mean_q:.2f}{mark}",
                           render.grid_text(a.grid, model.task)))
        if t.expected is not None:
            blocks.append(("expected", render.grid_text(t.expected, model.task)))
        lines += ["", *_side_by_side(blocks)]
        if not t.answers:
            lines.append("no answer: none of the predictions could be decoded to a grid")
        lines.append(f"{t.n_predictions} predictions, {t.n_invalid} could not be decoded; {len(t.answers)} distinct "
                     f"answers. Identity version: {_halting_line(t.thinking)}")
        if show_segments:
            lines += ["", "identity version, segment by segment:", *_segments_text(model.task, t.thinking)]
        tests.append({"answers": [{"grid": a.grid.tolist(), "votes": a.votes, "mean_q": a.mean_q, "correct": a.correct}
                                  for a in t.answers[:2]], "n_predictions": t.n_predictions, "n_invalid": t.n_invalid,
                      "segments": t.thinking.segments, "halt_step": t.thinking.halt_step})
    return "\n".join(lines), {"kind": model.task.name, "task_id": r.task_id, "versions": r.versions, "tests": tests}


def _gif_tiles(kind: Any, input_grid: Any, t: Any) -> list[list[tuple[Any, str]]]:
    """GIF frames: the input, then the answer after each segment with its changed cells marked."""
    from hrmkit.data import render
    from hrmkit.tasks import resolve

    grids = [input_grid] + [g for g, _ in t.frames]
    side = max((max(g.shape) for g in grids if g is not None), default=None)
    given = resolve(kind).given(input_grid)
    frames = [[(render.grid_image(input_grid, kind, given=given, side=side), "input")]]
    for i, (grid, marked) in enumerate(t.frames):
        q = f"q_halt {t.q_halt[i]:.2f}" + (f" q_cont {t.q_continue[i]:.2f}" if t.q_continue else "")
        cap = f"segment {i + 1}/{t.segments}  {q}  {'halt' if _wants_halt(t, i) else 'continue'}"
        frames.append([(render.grid_image(grid, kind, marked=marked, given=given, side=side), cap)])
    return frames
