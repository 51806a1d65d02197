"""Drawing puzzle grids: one renderer for the terminal (text), the HTML report (SVG) and images (PNG, GIF).

Used by `hrm data inspect` (text, `--png`), `hrm eval --report` (SVG) and `hrm solve` (text, `--gif`).

Display grids, by task kind (`KINDS`):
- "sudoku": int [n, n] digits, 0 = blank;
- "maze": str [h, w] of the characters "# SGo" (wall, open, start, goal, path; "?" for any other token);
- "arc": int [h, w] colours 0..9, drawn in the ARC palette.
`tokens_to_grid(kind, tokens)` turns one token row of an hrmkit dataset (docs/design.md §1 layouts) into one; an
ARC canvas is cropped to its grid (the reference decode), never drawn as the padded 30x30 canvas.

Marks: `marked` (bool [h, w]: cells that differ from the expected answer, or that changed since the previous
ACT segment) are drawn as red digits on pink (Sudoku) or as a cross (maze, ARC), and in text as `[d]` (Sudoku)
or a `*` after the cell. `given` (bool [h, w], Sudoku): the clues, drawn black; other digits are drawn blue.

PNG and GIF use Pillow (a dependency of hrmkit, imported on first use); text and SVG need numpy only.
"""

from __future__ import annotations

import html
import io
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from hrmkit.data.maze import CHARSET
from hrmkit.data.sudoku import BOXES

if TYPE_CHECKING:
    from PIL import Image

KINDS = ("sudoku", "maze", "arc")
ARC_COLOURS = ["#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00", "#AAAAAA", "#F012BE", "#FF851B",
               "#7FDBFF", "#870C25"]
MAZE_CHARS = CHARSET  # tokens 1..5
MAZE_COLOURS = {"#": "#333333", " ": "#ffffff", "S": "#2ECC40", "G": "#FF4136", "o": "#0074D9"}
DIFF_COLOUR = "#e0115f"  # marked Sudoku digits
MARK_FILL = "#ffd6d6"  # background of a marked Sudoku cell
FILLED_COLOUR = "#1f4e9c"  # Sudoku digits that are not clues (when `given` is known)
_MAZE_TABLE = np.array(list("?" + MAZE_CHARS + "?"))


# ----------------------------------------------------------------------------------------------- grids

def _numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


def tokens_to_grid(kind: str, tokens: Any, *, decode_fn: Callable | None = None) -> np.ndarray | None:
    """Display grid from one hrmkit token row (numpy or torch).

    sudoku: int [n*n] tokens (0 PAD, 1 blank, 2.. digits) -> int [n, n] digits, 0 = blank or PAD.
    maze: int [h*w] tokens 1..5 (square) -> str [h, w] of "# SGo" ("?" for other tokens).
    arc: int [900] canvas -> `decode_fn(tokens)` (default `hrmkit.data.arc.decode_grid`), None if no grid.
    Raises ValueError for an unknown kind or a non-square row.
    """
    t = _numpy(tokens).astype(np.int64).reshape(-1)
    if kind == "arc":
        if decode_fn is None:
            from hrmkit.data.arc import decode_grid as decode_fn
        grid = decode_fn(t)
        return None if grid is None else np.asarray(grid)
    side = math.isqrt(t.size)
    if side * side != t.size:
        raise ValueError(f"{kind} token row of length {t.size} is not square")
    if kind == "sudoku":
        return np.clip(t - 1, 0, 9).reshape(side, side)
    if kind == "maze":
        return _MAZE_TABLE[np.clip(t, 0, 6)].reshape(side, side)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def task_kind(task: str | None, seq_len: int, vocab_size: int) -> str | None:
    """The kind of grid a dataset or model holds: its `task` when it is one of `KINDS`, else what the token
    layout says (docs/design.md §1: Sudoku n x n with vocab n + 2, n in 4, 6, 9; square mazes with vocab 6; ARC
    30x30 canvases with vocab 12); None when it is none of them."""
    if task in KINDS:
        return task
    side = math.isqrt(seq_len)
    if side * side != seq_len:
        return None
    if side in (4, 6, 9) and vocab_size == side + 2:
        return "sudoku"
    if vocab_size == 6:
        return "maze"
    if vocab_size == 12 and side == 30:
        return "arc"
    return None


def crop_colours(tokens: Any) -> np.ndarray | None:
    """Colours (int [h, w]) inside the bounding box of the colour tokens of an ARC canvas (int [900]), for
    rows placed anywhere on the canvas (the train split translates them); None when it holds no colour."""
    from hrmkit.data.arc import COLOR_OFFSET, GRID_MAX, NUM_COLORS

    t = _numpy(tokens).astype(np.int64).reshape(GRID_MAX, GRID_MAX)
    colour = (t >= COLOR_OFFSET) & (t < COLOR_OFFSET + NUM_COLORS)
    if not colour.any():
        return None
    (r0, c0), (r1, c1) = np.argwhere(colour).min(0), np.argwhere(colour).max(0)
    return np.clip(t[r0:r1 + 1, c0:c1 + 1] - COLOR_OFFSET, 0, NUM_COLORS - 1)


def _chars(grid: np.ndarray) -> np.ndarray:
    """Maze grid as characters (int token grids are mapped through "# SGo")."""
    return _MAZE_TABLE[np.clip(grid, 0, 6)] if grid.dtype.kind in "iu" else grid.astype(str)


def diff_mask(grid: Any, other: Any, kind: str) -> np.ndarray | None:
    """bool [h, w]: cells where `grid` and `other` differ; None when either is None or their shapes differ."""
    if grid is None or other is None:
        return None
    a, b = np.asarray(grid), np.asarray(other)
    if kind == "maze":
        a, b = _chars(a), _chars(b)
    return a != b if a.shape == b.shape else None


def segment_frames(kind: str, input_tokens: Any, segment_tokens: Any, *,
                   decode_fn: Callable | None = None) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The thinking view of one row: per ACT segment (segment_tokens int [K, S], the argmax after each) its
    display grid and the bool mask of the cells changed since the previous segment (the first segment is
    compared with the input); the mask is None when the shapes differ or a grid could not be decoded."""
    prev = tokens_to_grid(kind, input_tokens, decode_fn=decode_fn)
    frames = []
    for row in _numpy(segment_tokens):
        grid = tokens_to_grid(kind, row, decode_fn=decode_fn)
        frames.append((grid, diff_mask(grid, prev, kind)))
        prev = grid
    return frames


def token_names(kind: str | None, vocab_size: int) -> list[str]:
    """A short name for each token id 0..vocab_size-1 of a task's layout (for confusion tables)."""
    if kind == "sudoku":
        base = ["PAD", "blank"] + [str(d) for d in range(1, vocab_size - 1)]
    elif kind == "maze":
        base = ["PAD", "wall #", "open", "S", "G", "path o"]
    elif kind == "arc":
        base = ["PAD", "EOS"] + [f"colour {c}" for c in range(10)]
    else:
        base = []
    return [base[i] if i < len(base) else str(i) for i in range(vocab_size)]


# ----------------------------------------------------------------------------------------------- text

def grid_text(grid: Any, kind: str, *, marked: Any = None, box: Sequence[int] | None = None) -> list[str]:
    """Text lines of a display grid. Sudoku: '.' for blanks, boxes separated by '|' and '-+-' (box shape
    `box` = (rows, columns), default from the size: 2x2, 2x3, 3x3); marked cells as `[d]`. Maze and ARC: one
    character per cell (ARC colours as digits), followed by '*' (marked) or ' ' when `marked` is given. A
    missing grid (None) and an empty one (0 cells) each give one line saying so."""
    if grid is None:
        return ["(no grid: the answer could not be decoded)"]
    g = np.asarray(grid)
    if g.size == 0:  # an empty ARC crop, a voting candidate as in the references
        return ["(empty grid)"]
    h, w = g.shape
    mark = np.zeros((h, w), bool) if marked is None else np.asarray(marked, bool)
    if kind == "sudoku":
        br, bc = box or BOXES.get(w, (h, w))
        cells = [["." if v == 0 else str(int(v)) for v in row] for row in g]
        if marked is not None:
            cells = [[f"[{c}]" if mark[r, k] else f" {c} " for k, c in enumerate(row)] for r, row in enumerate(cells)]
        sep, width = (" | ", 2 * bc - 1) if marked is None else ("|", 3 * bc)
        joiner = " " if marked is None else ""
        lines = []
        for r in range(h):
            if r and r % br == 0:
                lines.append(("-+-" if marked is None else "+").join("-" * width for _ in range(w // bc)))
            lines.append(sep.join(joiner.join(cells[r][c:c + bc]) for c in range(0, w, bc)))
        return lines
    chars = _chars(g) if kind == "maze" else np.vectorize(lambda v: str(int(v)))(g)
    if marked is None:
        return ["".join(row) for row in chars]
    return ["".join(c + ("*" if m else " ") for c, m in zip(row, mrow)) for row, mrow in zip(chars, mark)]


# ----------------------------------------------------------------------------------------------- svg

def _cell_fill(kind: str, v: Any, marked: bool) -> str:
    if kind == "arc":
        return ARC_COLOURS[int(v)] if 0 <= int(v) <= 9 else "#ffffff"
    if kind == "maze":
        return MAZE_COLOURS.get(str(v), "#ffff99")
    return MARK_FILL if marked else "#ffffff"


def _cell_px(kind: str, h: int, w: int, scale: float = 1.0) -> int:
    side = max(h, w)
    base = {"sudoku": 22, "arc": max(6, min(24, 240 // side)), "maze": max(6, min(16, 300 // side))}[kind]
    return int(round(base * scale))


def _cross(x: float, y: float, cell: float) -> tuple[float, float, float, float, float, float, float, float]:
    m = max(1.5, cell * 0.2)
    return x + m, y + m, x + cell - m, y + cell - m, x + cell - m, y + m, x + m, y + cell - m


def grid_svg(grid: Any, kind: str, *, marked: Any = None, given: Any = None) -> str:
    """Inline SVG of one display grid (None draws an "invalid" box). Cell fills are drawn as horizontal runs
    of equal colour and the cell borders as one path, which keeps a 30x30 grid to a few kilobytes."""
    if grid is None:
        return '<svg width="80" height="40" role="img"><rect width="80" height="40" fill="#fee"/>' \
               '<text x="40" y="25" text-anchor="middle" font-size="12">invalid</text></svg>'
    g = np.asarray(grid)
    if g.ndim != 2 or g.size == 0:
        return f"<span>unrenderable grid of shape {html.escape(str(g.shape))}</span>"
    if kind == "maze":
        g = _chars(g)
    h, w = g.shape
    diff = np.zeros(g.shape, dtype=bool) if marked is None else np.asarray(marked, bool)
    clue = None if given is None else np.asarray(given, bool)
    cell = _cell_px(kind, h, w)
    W, H = w * cell + 2, h * cell + 2
    parts = [f'<svg width="{W}" height="{H}" role="img">', f'<rect width="{W}" height="{H}" fill="#888"/>']
    for r in range(h):
        fills = [_cell_fill(kind, g[r, c], bool(diff[r, c])) for c in range(w)]
        c = 0
        while c < w:
            run = c
            while run + 1 < w and fills[run + 1] == fills[c]:
                run += 1
            parts.append(f'<rect x="{1 + c * cell}" y="{1 + r * cell}" width="{(run - c + 1) * cell}" '
                         f'height="{cell}" fill="{fills[c]}"/>')
            c = run + 1
    grid_lines = "".join(f"M{1 + c * cell} 1V{H - 1}" for c in range(1, w)) + \
        "".join(f"M1 {1 + r * cell}H{W - 1}" for r in range(1, h))
    if grid_lines and cell >= 8:
        parts.append(f'<path d="{grid_lines}" stroke="#bbb" stroke-width="0.5"/>')
    for r in range(h):
        for c in range(w):
            x, y, v = 1 + c * cell, 1 + r * cell, g[r, c]
            if kind == "sudoku" and int(v) != 0:
                colour = DIFF_COLOUR if diff[r, c] else "#000" if clue is None or clue[r, c] else FILLED_COLOUR
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell * 0.75}" text-anchor="middle" '
                             f'font-size="{int(cell * 0.7)}" fill="{colour}">{int(v)}</text>')
            elif kind == "maze" and cell >= 12 and str(v) not in "# ":
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell * 0.8}" text-anchor="middle" '
                             f'font-size="{int(cell * 0.8)}" fill="#fff">{html.escape(str(v))}</text>')
            if diff[r, c] and kind != "sudoku":  # a cross readable on every colour: white under black
                x0, y0, x1, y1, x2, y2, x3, y3 = _cross(x, y, cell)
                cross = f"M{x0} {y0}L{x1} {y1}M{x2} {y2}L{x3} {y3}"
                parts.append(f'<path class="diff" d="{cross}" stroke="#fff" stroke-width="{max(2.5, cell / 6):.1f}"/>'
                             f'<path d="{cross}" stroke="#000" stroke-width="{max(1.0, cell / 14):.1f}"/>')
    box = _sudoku_box(kind, h, w)
    if box:
        lines = "".join(f"M{1 + i * cell} 1V{H - 1}" for i in range(0, w + 1, box[1])) + \
            "".join(f"M1 {1 + i * cell}H{W - 1}" for i in range(0, h + 1, box[0]))
        parts.append(f'<path d="{lines}" stroke="#000" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def _sudoku_box(kind: str, h: int, w: int) -> tuple[int, int] | None:
    """(rows, columns) of a Sudoku box for the thick lines (None for other kinds)."""
    if kind != "sudoku":
        return None
    return BOXES.get(w) if h == w else None


# ----------------------------------------------------------------------------------------------- images

def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # pragma: no cover - Pillow is a dependency of hrmkit
        from hrmkit.errors import HrmkitError

        raise HrmkitError("drawing PNG or GIF images needs the package Pillow (pip install Pillow)") from None
    return Image, ImageDraw, ImageFont


def _font(size: int):
    _, _, ImageFont = _pil()
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _centred_text(draw, x: float, y: float, text: str, font, fill: str) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((x - (left + right) / 2, y - (top + bottom) / 2), text, font=font, fill=fill)


def grid_image(grid: Any, kind: str, *, marked: Any = None, given: Any = None, scale: float = 1.4,
               side: int | None = None) -> "Image.Image":
    """RGB image of one display grid, drawn like `grid_svg` (cells `scale` times the SVG's size; the cell size
    is chosen for a grid of `side` cells, default the grid's longer side: give grids drawn next to each
    other the same `side` to draw them at one scale)."""
    Image, ImageDraw, _ = _pil()
    if grid is None:
        img = Image.new("RGB", (90, 40), "#ffeeee")
        _centred_text(ImageDraw.Draw(img), 45, 20, "invalid", _font(12), "#000")
        return img
    g = np.asarray(grid)
    if kind == "maze":
        g = _chars(g)
    h, w = g.shape
    diff = np.zeros(g.shape, dtype=bool) if marked is None else np.asarray(marked, bool)
    clue = None if given is None else np.asarray(given, bool)
    cell = max(4, _cell_px(kind, side or h, side or w, scale))
    img = Image.new("RGB", (w * cell + 1, h * cell + 1), "#888888")
    draw = ImageDraw.Draw(img)
    font = _font(max(8, int(cell * 0.7)))
    for r in range(h):
        for c in range(w):
            x, y, v = c * cell, r * cell, g[r, c]
            draw.rectangle([x, y, x + cell, y + cell], fill=_cell_fill(kind, v, bool(diff[r, c])),
                           outline="#bbbbbb" if cell >= 8 else None)
            if kind == "sudoku" and int(v) != 0:
                colour = DIFF_COLOUR if diff[r, c] else "#000" if clue is None or clue[r, c] else FILLED_COLOUR
                _centred_text(draw, x + cell / 2, y + cell / 2, str(int(v)), font, colour)
            elif kind == "maze" and cell >= 12 and str(v) not in "# ":
                _centred_text(draw, x + cell / 2, y + cell / 2, str(v), font, "#fff")
            if diff[r, c] and kind != "sudoku":
                x0, y0, x1, y1, x2, y2, x3, y3 = _cross(x, y, cell)
                for width, colour in ((max(3, cell // 6), "#fff"), (max(1, cell // 14), "#000")):
                    draw.line([x0, y0, x1, y1], fill=colour, width=width)
                    draw.line([x2, y2, x3, y3], fill=colour, width=width)
    box = _sudoku_box(kind, h, w)
    if box:
        for i in range(0, w + 1, box[1]):
            draw.line([i * cell, 0, i * cell, h * cell], fill="#000", width=2)
        for i in range(0, h + 1, box[0]):
            draw.line([0, i * cell, w * cell, i * cell], fill="#000", width=2)
    return img


def tile(rows: Sequence[Sequence[tuple["Image.Image", str]]], *, gap: int = 14,
         size: tuple[int, int] | None = None) -> "Image.Image":
    """One white image holding rows of (image, caption) tiles, each caption under its image; `size` (width,
    height) pads the result to a fixed size (frames of a GIF)."""
    Image, ImageDraw, _ = _pil()
    font = _font(12)
    cap_h = 18
    layout, width, height = [], 0, gap
    for row in rows:
        x, row_h = gap, 0
        for img, cap in row:
            layout.append((img, x, height))
            x += max(img.width, int(font.getlength(cap))) + gap
            row_h = max(row_h, img.height)
        width = max(width, x)
        height += row_h + cap_h + gap
    if size is not None:
        width, height = max(width, size[0]), max(height, size[1])
    out = Image.new("RGB", (width, height), "#ffffff")
    draw = ImageDraw.Draw(out)
    captions = [cap for row in rows for _, cap in row]
    for (img, x, y), cap in zip(layout, captions):
        out.paste(img, (x, y))
        draw.text((x, y + img.height + 3), cap, font=font, fill="#222222")
    return out


def png_bytes(image: "Image.Image") -> bytes:
    """PNG file content of an image."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def gif_bytes(tiles: Sequence[Sequence[tuple["Image.Image", str]]], *, frame_ms: int = 700,
              last_ms: int = 2500) -> bytes:
    """An animated GIF (looping), one frame per entry of `tiles` (each a row of (image, caption) tiles, see
    `tile`), all padded to one size; the last frame is shown `last_ms`, the others `frame_ms` milliseconds."""
    if not tiles:
        raise ValueError("a GIF needs at least one frame")
    first = [tile([row]) for row in tiles]
    size = (max(f.width for f in first), max(f.height for f in first))
    frames = [tile([row], size=size) for row in tiles]
    buf = io.BytesIO()
    durations = [frame_ms] * (len(frames) - 1) + [last_ms]
    frames[0].save(buf, format="GIF", save_all=True, append_images=list(frames[1:]), duration=durations, loop=0,
                   optimize=False)
    return buf.getvalue()
