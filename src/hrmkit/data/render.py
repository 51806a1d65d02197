"""Drawing puzzle grids: one renderer for the terminal (text), the HTML report (SVG) and images (PNG, GIF).

Used by `hrm data inspect` (text, `--png`), `hrm eval --report` (SVG) and `hrm solve` (text, `--gif`).

What a grid looks like is its task's (`hrmkit.tasks.Task`: `grid` turns a token row into a display grid,
`cell_style`, `cell_px`, `box`, `text_lines` draw it); this module lays the cells out. Every function takes
the task as a `Task` or a registered name. Sudoku display grids are int [n, n] digits (0 = blank), mazes str
[h, w] of "# SGo", ARC and plain grids int [h, w] values; an ARC canvas is cropped to its grid (the reference
decode), never drawn as the padded 30x30 canvas.

Marks: `marked` (bool [h, w]: cells that differ from the expected answer, or that changed since the previous
ACT segment) are drawn as the task's cell style says (red digits on pink for Sudoku, a cross otherwise), and
in text as the task's `text_lines` do (`[d]` for Sudoku, a `*` after the cell otherwise). `given` (bool
[h, w]): the clues (Sudoku: drawn black; other digits are drawn blue).

PNG and GIF use Pillow (a dependency of hrmkit, imported on first use); text and SVG need numpy only.
"""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hrmkit.tasks import Task, resolve

if TYPE_CHECKING:
    from PIL import Image


# ----------------------------------------------------------------------------------------------- grids

def _numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


def tokens_to_grid(task: Task | str | None, tokens: Any, *, dataset_row: bool = False) -> np.ndarray | None:
    """Display grid of one token row (numpy or torch, int [S]) by its task's `grid` (module docstring); a
    dataset row (`dataset_row`, e.g. a translated ARC canvas) by its `dataset_grid`. None when the row holds
    no grid. ValueError for a row the task cannot lay out."""
    t = resolve(task)
    row = _numpy(tokens).astype(np.int64).reshape(-1)
    return t.dataset_grid(row) if dataset_row else t.grid(row)


def diff_mask(grid: Any, other: Any, task: Task | str | None) -> np.ndarray | None:
    """bool [h, w]: cells where `grid` and `other` differ; None when either is None or their shapes differ."""
    if grid is None or other is None:
        return None
    t = resolve(task)
    a, b = t.display(grid), t.display(other)
    return a != b if a.shape == b.shape else None


def segment_frames(task: Task | str | None, input_tokens: Any,
                   segment_tokens: Any) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The thinking view of one row: per ACT segment (segment_tokens int [K, S], the argmax after each) its
    display grid and the bool mask of the cells changed since the previous segment (the first segment is
    compared with the input); the mask is None when the shapes differ or a grid could not be decoded."""
    prev = tokens_to_grid(task, input_tokens)
    frames = []
    for row in _numpy(segment_tokens):
        grid = tokens_to_grid(task, row)
        frames.append((grid, diff_mask(grid, prev, task)))
        prev = grid
    return frames


def token_names(task: Task | str | None, vocab_size: int) -> list[str]:
    """A short name for each token id 0..vocab_size-1 of a task's layout (for confusion tables)."""
    return resolve(task).token_names(vocab_size)


# ----------------------------------------------------------------------------------------------- text

def grid_text(grid: Any, task: Task | str | None, *, marked: Any = None, box: Sequence[int] | None = None) -> list[str]:
    """Text lines of a display grid (the task's `text_lines`; Sudoku box shape `box` = (rows, columns)). A
    missing grid (None) and an empty one (0 cells) each give one line saying so."""
    if grid is None:
        return ["(no grid: the answer could not be decoded)"]
    t = resolve(task)
    g = t.display(grid)
    if g.size == 0:  # an empty ARC crop, a voting candidate as in the references
        return ["(empty grid)"]
    return t.text_lines(g, marked=marked, box=box)


# ----------------------------------------------------------------------------------------------- svg

def _cross(x: float, y: float, cell: float) -> tuple[float, float, float, float, float, float, float, float]:
    m = max(1.5, cell * 0.2)
    return x + m, y + m, x + cell - m, y + cell - m, x + cell - m, y + m, x + m, y + cell - m


def grid_svg(grid: Any, task: Task | str | None, *, marked: Any = None, given: Any = None) -> str:
    """Inline SVG of one display grid (None draws an "invalid" box). Cell fills are drawn as horizontal runs
    of equal colour and the cell borders as one path, which keeps a 30x30 grid to a few kilobytes."""
    if grid is None:
        return '<svg width="80" height="40" role="img"><rect width="80" height="40" fill="#fee"/>' \
               '<text x="40" y="25" text-anchor="middle" font-size="12">invalid</text></svg>'
    g = np.asarray(grid)
    if g.ndim != 2 or g.size == 0:
        return f"<span>unrenderable grid of shape {html.escape(str(g.shape))}</span>"
    t = resolve(task)
    g = t.display(g)
    h, w = g.shape
    cell = t.cell_px(max(h, w))
    styles = _styles(t, g, marked, given, cell)
    W, H = w * cell + 2, h * cell + 2
    parts = [f'<svg width="{W}" height="{H}" role="img">', f'<rect width="{W}" height="{H}" fill="#888"/>']
    for r in range(h):
        fills = [styles[r][c].fill for c in range(w)]
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
            x, y, st = 1 + c * cell, 1 + r * cell, styles[r][c]
            if st.text is not None:
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell * st.baseline}" text-anchor="middle" '
                             f'font-size="{int(cell * st.text_scale)}" fill="{st.text_colour}">{html.escape(st.text)}</text>')
            if st.cross:  # a cross readable on every colour: white under black
                x0, y0, x1, y1, x2, y2, x3, y3 = _cross(x, y, cell)
                cross = f"M{x0} {y0}L{x1} {y1}M{x2} {y2}L{x3} {y3}"
                parts.append(f'<path class="diff" d="{cross}" stroke="#fff" stroke-width="{max(2.5, cell / 6):.1f}"/>'
                             f'<path d="{cross}" stroke="#000" stroke-width="{max(1.0, cell / 14):.1f}"/>')
    box = t.box(h, w)
    if box:
        lines = "".join(f"M{1 + i * cell} 1V{H - 1}" for i in range(0, w + 1, box[1])) + \
            "".join(f"M1 {1 + i * cell}H{W - 1}" for i in range(0, h + 1, box[0]))
        parts.append(f'<path d="{lines}" stroke="#000" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def _styles(t: Task, g: np.ndarray, marked: Any, given: Any, cell: int) -> list[list[Any]]:
    """The task's `CellStyle` of every cell of display grid g [h, w]."""
    diff = np.zeros(g.shape, dtype=bool) if marked is None else np.asarray(marked, bool)
    clue = None if given is None else np.asarray(given, bool)
    return [[t.cell_style(g[r, c], bool(diff[r, c]), None if clue is None else bool(clue[r, c]), cell)
             for c in range(g.shape[1])] for r in range(g.shape[0])]


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


def grid_image(grid: Any, task: Task | str | None, *, marked: Any = None, given: Any = None, scale: float = 1.4,
               side: int | None = None) -> "Image.Image":
    """RGB image of one display grid, drawn like `grid_svg` (cells `scale` times the SVG's size; the cell size
    is chosen for a grid of `side` cells, default the grid's longer side: give grids drawn next to each
    other the same `side` to draw them at one scale)."""
    Image, ImageDraw, _ = _pil()
    if grid is None:
        img = Image.new("RGB", (90, 40), "#ffeeee")
        _centred_text(ImageDraw.Draw(img), 45, 20, "invalid", _font(12), "#000")
        return img
    t = resolve(task)
    g = t.display(grid)
    h, w = g.shape
    cell = max(4, int(round(t.cell_px(side or max(h, w)) * scale)))
    styles = _styles(t, g, marked, given, cell)
    img = Image.new("RGB", (w * cell + 1, h * cell + 1), "#888888")
    draw = ImageDraw.Draw(img)
    font = _font(max(8, int(cell * 0.7)))
    for r in range(h):
        for c in range(w):
            x, y, st = c * cell, r * cell, styles[r][c]
            draw.rectangle([x, y, x + cell, y + cell], fill=st.fill, outline="#bbbbbb" if cell >= 8 else None)
            if st.text is not None:
                _centred_text(draw, x + cell / 2, y + cell / 2, st.text, font, st.text_colour)
            if st.cross:
                x0, y0, x1, y1, x2, y2, x3, y3 = _cross(x, y, cell)
                for width, colour in ((max(3, cell // 6), "#fff"), (max(1, cell // 14), "#000")):
                    draw.line([x0, y0, x1, y1], fill=colour, width=width)
                    draw.line([x2, y2, x3, y3], fill=colour, width=width)
    box = t.box(h, w)
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
