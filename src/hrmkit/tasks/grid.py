"""Integer grids of values 0..V-1 with no known rules (`hrm data grid --from-jsonl`, or a Python builder).

Two token layouts (docs/design.md §1 for ARC, which the canvas layout generalises):

- "plain": every input and output grid has one shape H x W. seq_len H*W (row-major), token = value + 1
  (0 is PAD and never occurs in built data), vocab V + 1.
- "canvas": grids of different shapes, each at most C x C, drawn at the top-left of a C x C canvas
  (seq_len C*C): 0 PAD, 1 EOS, value v -> v + 2 (vocab V + 2); EOS fills the row below the grid and the column
  right of it (over the grid's extent, where inside the canvas). A row is read back by the ARC crop: the
  largest top-left rectangle of value tokens (None when the top-left token is no value).

Natural form: a grid as a list of rows of ints (also a JSON object {"input": grid}, JSON text, or lines of one
character per cell, as `text_lines` prints them: 0-9 then a-z for 10..35).

Augmentations (`params["augmentations"]`, a subset of "dihedral", "colors"): a version is one dihedral
transform (the 8 of docs/design.md §2 for square plain grids and for the canvas layout, whose grids change
shape freely; the shape-keeping 0, 2, 4, 5 for non-square plain grids) combined with one permutation of the
values 1..V-1 (0, the background, is kept, as ARC does). Version 0 is the identity; version k uses dihedral
transform k mod D and a colour permutation drawn with the seed, no (transform, permutation) pair twice. There
are D * (V-1)! versions (D = 1 without "dihedral"; (V-1)! = 1 without "colors").

Parameters: {"height": H, "width": W, "num_values": V, "layout": "plain" | "canvas", "canvas": C (canvas
only), "augmentations": [...]}. For the canvas layout H and W are the largest grid height and width of the
data (C = min(30, max(H, W) + 1) when built by `hrm data grid`). No parameters: the ARC-like canvas (30, ten
values, both augmentations).

Public API: `GridTask`, `parse_grid(value, field, where, max_value)`, `encode_canvas(grid, canvas)`,
`crop_canvas(tokens, canvas, num_values)`, `AUGMENTATIONS`, `GRID_MAX_SIDE`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from hrmkit.data import arc
from hrmkit.data.augment import dihedral_transform, inverse_dihedral
from hrmkit.errors import HrmkitError, short_repr
from hrmkit.tasks.base import PAD_ID, Augmentation, Task

GRID_MAX_SIDE = 30  # as ARC: a canvas of 30 x 30 = 900 tokens
EOS_ID = 1
AUGMENTATIONS = ("dihedral", "colors")  # canonical order of params["augmentations"]
LAYOUTS = ("plain", "canvas")
MAX_PLAIN_VALUES = 255  # tokens are bytes: value + 1 <= 255
MAX_CANVAS_VALUES = 254  # value + 2 <= 255
SHAPE_KEEPING = (0, 2, 4, 5)  # dihedral transforms that keep a non-square grid's shape
DEFAULT_PARAMS = {"height": GRID_MAX_SIDE, "width": GRID_MAX_SIDE, "num_values": 10, "layout": "canvas",
                  "canvas": GRID_MAX_SIDE, "augmentations": list(AUGMENTATIONS)}
_CELL_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"  # Task.cell_char's characters, read back by encode
_ENUMERATE_PERMS = 5040  # up to 7! colour permutations are listed and shuffled; more are drawn at random


def parse_grid(value: Any, field: str, where: str, max_value: int | None = None,
               max_side: int = GRID_MAX_SIDE) -> np.ndarray:
    """int64 [h, w] of a JSON grid: a non-empty list of equal-length non-empty lists of ints (bool is no int)
    from 0 (up to `max_value` when given), 1 <= h, w <= max_side.

    HrmkitError "{where}: field {field}...: ..." naming the row (1-based, in words) or the cell
    (`field[r][c]`, JSON indices) and the value at fault."""
    if not isinstance(value, list) or not value:
        raise HrmkitError(f"{where}: field {field}: expected a non-empty list of rows, got {short_repr(value)}")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise HrmkitError(f"{where}: field {field}[{r}]: expected a non-empty list of values, got {short_repr(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise HrmkitError(f"{where}: field {field} row {r + 1} has {len(row)} values, row 1 has {width}")
    h, w = len(value), width
    if h > max_side or w > max_side:
        raise HrmkitError(f"{where}: field {field}: a {h}x{w} grid (rows x columns) is larger than "
                          f"{max_side}x{max_side}")
    for r, row in enumerate(value):
        for c, x in enumerate(row):
            if type(x) is not int:  # noqa: E721 - bool and float are refused, exactly
                raise HrmkitError(f"{where}: field {field}[{r}][{c}]: {short_repr(x)} is not an integer")
            if x < 0:
                raise HrmkitError(f"{where}: field {field}[{r}][{c}]: {x} is negative")
            if max_value is not None and x > max_value:
                raise HrmkitError(f"{where}: field {field}[{r}][{c}]: {x} is larger than {max_value}")
    return np.array(value, dtype=np.int64)


def encode_canvas(grid: np.ndarray, canvas: int) -> np.ndarray:
    """Tokens uint8 [canvas * canvas] of a value grid [h, w] (h, w <= canvas) at the canvas's top-left
    (module docstring; `data.arc.encode_grid` on a canvas x canvas canvas). ValueError when it does not fit."""
    return arc.encode_grid(grid, side=canvas)


def crop_canvas(tokens: Any, canvas: int, num_values: int) -> np.ndarray | None:
    """The value grid int64 [h, w] read from one canvas row (tokens [canvas * canvas]); None when the
    top-left token is no value."""
    t = np.asarray(tokens).astype(np.int64).reshape(1, canvas, canvas)
    rows, cols = arc.crop_sizes(t, num_values)
    h, w = int(rows[0]), int(cols[0])
    return None if h == 0 else t[0, :h, :w] - 2


def _map_tokens(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """lut[x] where x < len(lut), x elsewhere (tokens past the vocabulary are left alone), x's dtype."""
    xi = x.astype(np.int64)
    inside = (xi >= 0) & (xi < len(lut))
    return np.where(inside, lut[np.clip(xi, 0, len(lut) - 1)], xi).astype(x.dtype)


def _unrank(index: int, n: int) -> np.ndarray:
    """Permutation number `index` (lexicographic, 0 = identity) of values 1..n, as int64 [n + 1] with 0 first."""
    items = list(range(1, n + 1))
    out = [0]
    for k in range(n, 0, -1):
        f = math.factorial(k - 1)
        out.append(items.pop(index // f))
        index %= f
    return np.array(out, np.int64)


def _draw_perms(rng: np.random.Generator, num_values: int, count: int, identity_first: bool) -> list[np.ndarray]:
    """`count` distinct permutations int64 [V] of values 1..V-1 (0 fixed) in a seeded random order; with
    `identity_first` the identity first and nowhere else. The caller checks that enough exist."""
    n = max(num_values - 1, 0)
    total = math.factorial(n)
    skip = 1 if identity_first else 0
    out = [_unrank(0, n)] if identity_first and count else []
    need = count - len(out)
    if need <= 0:
        return out
    if total <= _ENUMERATE_PERMS:  # few permutations: draw their numbers without replacement (never stalls)
        return out + [_unrank(int(i) + skip, n) for i in rng.choice(total - skip, size=need, replace=False)]
    seen = {p.tobytes() for p in out}
    while len(out) < count:  # many permutations: repeats are rare
        p = np.concatenate([[0], 1 + rng.permutation(n)]).astype(np.int64)
        if p.tobytes() not in seen:
            seen.add(p.tobytes())
            out.append(p)
    return out


class GridTask(Task):
    """Integer grids of values 0..V-1 (module docstring). No rules: `has_verifier` is False."""

    name = "grid"
    title = "grid"
    description = "integer grids (imported from JSONL): a grid as a list of rows of integers"
    has_verifier = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str = "task") -> "GridTask":
        """The task of these parameters (module docstring), normalised (augmentations in canonical order,
        `canvas` only for the canvas layout). HrmkitError naming `where`, the field and the value."""
        if params is not None and not isinstance(params, Mapping):
            raise HrmkitError(f"{where}: task parameters must be a JSON object, got {short_repr(params)}")
        if not params:
            return cls(DEFAULT_PARAMS)
        p = dict(params)

        def field(name: str, lo: int, hi: int) -> int:
            if name not in p:
                raise HrmkitError(f"{where}: params.{name}: missing (a grid task needs height, width, "
                                  "num_values, layout and augmentations)")
            v = p[name]
            if type(v) is not int or not lo <= v <= hi:  # noqa: E721 - bool is no size
                raise HrmkitError(f"{where}: params.{name}: expected an integer {lo}..{hi}, got {short_repr(v)}")
            return v

        layout = p.get("layout")
        if layout not in LAYOUTS:
            raise HrmkitError(f"{where}: params.layout: expected 'plain' or 'canvas', got {short_repr(layout)}")
        height = field("height", 1, GRID_MAX_SIDE)
        width = field("width", 1, GRID_MAX_SIDE)
        num_values = field("num_values", 1, MAX_PLAIN_VALUES if layout == "plain" else MAX_CANVAS_VALUES)
        out: dict[str, Any] = {"height": height, "width": width, "num_values": num_values, "layout": layout}
        if layout == "canvas":
            out["canvas"] = field("canvas", max(height, width), GRID_MAX_SIDE)
        elif "canvas" in p:
            raise HrmkitError(f"{where}: params.canvas: only the canvas layout has a canvas, got "
                              f"{short_repr(p['canvas'])} with layout 'plain'")
        augs = p.get("augmentations")
        if not isinstance(augs, (list, tuple)) or any(a not in AUGMENTATIONS for a in augs):
            raise HrmkitError(f"{where}: params.augmentations: expected a list of 'dihedral' and 'colors', "
                              f"got {short_repr(augs)}")
        out["augmentations"] = [a for a in AUGMENTATIONS if a in augs]
        return cls(out)

    # ----------------------------------------------------------------------------------------- shape

    @property
    def layout(self) -> str:
        return self.params["layout"]

    @property
    def num_values(self) -> int:
        return int(self.params["num_values"])

    @property
    def canvas(self) -> int | None:
        """The canvas side C (canvas layout), None for plain grids."""
        return self.params.get("canvas")

    @property
    def seq_len(self) -> int:
        """Tokens per row: H*W (plain) or C*C (canvas)."""
        c = self.canvas
        return c * c if c is not None else self.params["height"] * self.params["width"]

    @property
    def vocab_size(self) -> int:
        """V + 1 (plain: PAD, values) or V + 2 (canvas: PAD, EOS, values)."""
        return self.num_values + (1 if self.layout == "plain" else 2)

    @property
    def _offset(self) -> int:
        return 1 if self.layout == "plain" else 2

    def _dihedral_ids(self) -> tuple[int, ...]:
        if "dihedral" not in self.params["augmentations"]:
            return (0,)
        if self.layout == "plain" and self.params["height"] != self.params["width"]:
            return SHAPE_KEEPING
        return tuple(range(8))

    def num_versions(self) -> int:
        """How many distinct augmented versions exist: D * (V-1)! (module docstring); 1 without augmentations."""
        colours = math.factorial(max(self.num_values - 1, 0)) if "colors" in self.params["augmentations"] else 1
        return len(self._dihedral_ids()) * colours

    def _check_seq_len(self, seq_len: int, what: str) -> None:
        if int(seq_len) != self.seq_len:
            raise HrmkitError(f"{what}: rows of {seq_len} tokens, but this grid task's rows hold {self.seq_len} "
                              f"({self._shape_text()})")

    def _shape_text(self) -> str:
        if self.layout == "plain":
            return f"{self.params['height']}x{self.params['width']} grids"
        return f"grids up to {self.canvas}x{self.canvas} on a {self.canvas}x{self.canvas} canvas"

    # ----------------------------------------------------------------------------------------- token layout

    def token_names(self, vocab_size: int) -> list[str]:
        base = ["PAD"] + ([] if self.layout == "plain" else ["EOS"]) + [str(v) for v in range(self.num_values)]
        return [base[i] if i < len(base) else str(i) for i in range(vocab_size)]

    def input_tokens(self, vocab_size: int):
        values = tuple(range(self._offset, self._offset + self.num_values))
        return values, ((PAD_ID,) if self.layout == "plain" else (PAD_ID, EOS_ID))

    def answer_tokens(self, vocab_size: int):
        if self.layout == "plain":
            return tuple(range(1, self.num_values + 1))
        return (EOS_ID,) + tuple(range(2, self.num_values + 2))

    # ----------------------------------------------------------------------------------------- natural forms

    def _parse(self, puzzle: Any, where: str) -> np.ndarray:
        if isinstance(puzzle, str):
            text = puzzle.strip()
            if text[:1] in "[{":
                try:
                    puzzle = json.loads(text)
                except json.JSONDecodeError as e:
                    raise HrmkitError(f"{where}: not JSON ({e.msg}: line {e.lineno} column {e.colno})") from None
            else:
                puzzle = self._parse_text(text, where)
        if isinstance(puzzle, Mapping):
            if "input" not in puzzle:
                raise HrmkitError(f"{where}: a grid puzzle object needs the field 'input', got keys "
                                  f"{sorted(puzzle)}")
            puzzle = puzzle["input"]
        if isinstance(puzzle, np.ndarray):
            puzzle = puzzle.tolist()
        return parse_grid(puzzle, "input", where, self.num_values - 1)

    def _parse_text(self, text: str, where: str) -> list[list[int]]:
        rows = [line.strip() for line in text.splitlines() if line.strip()]
        if not rows:
            raise HrmkitError(f"{where}: an empty grid")
        grid = []
        for r, line in enumerate(rows):
            row = []
            for c, ch in enumerate(line):
                v = _CELL_CHARS.find(ch.lower())
                if v < 0:
                    raise HrmkitError(f"{where}: row {r + 1}, column {c + 1}: {ch!r} is no cell value (0-9, a-z "
                                      "for 10..35, or give the grid as JSON)")
                row.append(v)
            grid.append(row)
        return grid

    def encode(self, puzzle: Any, seq_len: int, where: str = "puzzle") -> np.ndarray:
        """Tokens uint8 [seq_len] of a grid (module docstring). HrmkitError naming `where` for a malformed
        grid, a value >= V, a plain grid of another shape, a grid larger than the canvas, or a seq_len that
        is not this task's."""
        self._check_seq_len(seq_len, where)
        g = self._parse(puzzle, where)
        return self.encode_grid(g, where)

    def encode_grid(self, grid: np.ndarray, where: str = "grid") -> np.ndarray:
        """Tokens uint8 [seq_len] of a value grid int [h, w] already checked for values 0..V-1; HrmkitError
        naming `where` when its shape does not fit the layout."""
        g = np.asarray(grid)
        h, w = g.shape
        if self.layout == "plain":
            H, W = self.params["height"], self.params["width"]
            if (h, w) != (H, W):
                raise HrmkitError(f"{where}: a {h}x{w} grid, but this task's grids are {H}x{W}")
            return (g.reshape(-1) + 1).astype(np.uint8)
        c = self.canvas
        if h > c or w > c:
            raise HrmkitError(f"{where}: a {h}x{w} grid does not fit this task's {c}x{c} canvas")
        return encode_canvas(g, c)

    def decode(self, tokens: Any) -> list[list[int]] | None:
        """The grid (list of rows of ints) of one token row int [S]; None when it holds no grid: a canvas
        whose top-left token is no value, or a plain row with a cell that is no value (PAD, out of range)."""
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        if self.layout == "plain":
            self._check_seq_len(t.size, "decode")
            v = t - 1
            if v.min() < 0 or v.max() >= self.num_values:
                return None
            return v.reshape(self.params["height"], self.params["width"]).tolist()
        g = self.grid(t)
        return None if g is None else g.tolist()

    def grid(self, tokens: Any) -> np.ndarray | None:
        """Display grid int64 [h, w] of values: plain rows reshaped (cells that are no value shown as 0), a
        canvas cropped at its EOS markers (None when it holds no grid)."""
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        if self.layout == "plain":
            self._check_seq_len(t.size, "grid")
            v = np.where((t >= 1) & (t <= self.num_values), t - 1, 0)
            return v.reshape(self.params["height"], self.params["width"])
        self._check_seq_len(t.size, "grid")
        return crop_canvas(t, self.canvas, self.num_values)

    def dataset_lines(self, tokens: Any, extra: Any = None) -> list[str]:
        """The display grid, one character per value (`hrm data inspect`)."""
        g = self.grid(tokens)
        return ["(no grid)"] if g is None else self.text_lines(g)

    def puzzle_text(self, input_grid: Any) -> str:
        """The grid as JSON (what `encode` reads back)."""
        return json.dumps(np.asarray(input_grid).astype(np.int64).tolist())

    # ----------------------------------------------------------------------------------------- augmentations

    def version_specs(self, versions: int, seed: int = 0) -> list[tuple[int, np.ndarray]]:
        """[(dihedral transform id, value permutation int64 [V] with perm[0] == 0)] of versions 0..versions-1
        (module docstring); version 0 is (0, identity). HrmkitError when more versions are asked than exist."""
        total = self.num_versions()
        if versions < 1 or versions > total:
            augs = ", ".join(self.params["augmentations"]) or "none"
            raise HrmkitError(f"{versions} versions asked of a grid task with {total} (augmentations: {augs}; "
                              f"{self._shape_text()}, {self.num_values} values); ask for 1..{total}")
        tids = self._dihedral_ids()
        d = len(tids)
        rng = np.random.default_rng(seed)
        if "colors" in self.params["augmentations"]:
            # transform t is used by versions t, t + D, ...: it needs that many distinct permutations
            perms = [_draw_perms(rng, self.num_values, len(range(t, versions, d)), t == 0) for t in range(d)]
        else:
            perms = [[np.arange(self.num_values, dtype=np.int64)] for _ in range(d)]
        return [(tids[k % d], perms[k % d][k // d]) for k in range(versions)]

    def _luts(self, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token maps (forward, inverse) int64 [vocab] of a value permutation; PAD and EOS stay."""
        off = self._offset
        fwd = np.arange(self.vocab_size, dtype=np.int64)
        fwd[off:] = perm + off
        inv = np.arange(self.vocab_size, dtype=np.int64)
        inv[fwd] = np.arange(self.vocab_size)
        return fwd, inv

    def _apply(self, rows: np.ndarray, tid: int, lut: np.ndarray) -> np.ndarray:
        """Rows [N, S] with dihedral transform `tid` and token map `lut` applied (canvas: to the cropped grid,
        redrawn at the top-left; rows holding no grid get the token map only)."""
        if self.layout == "plain":
            H, W = self.params["height"], self.params["width"]
            out = dihedral_transform(rows.reshape(-1, H, W), tid).reshape(rows.shape)
            return _map_tokens(out, lut)
        c = self.canvas
        mapped = _map_tokens(rows, lut)
        if tid == 0:
            return mapped
        canv = mapped.reshape(-1, c, c)
        hs, ws = arc.crop_sizes(canv.astype(np.int64), self.num_values)
        out = mapped.copy().reshape(-1, c, c)
        for i, (h, w) in enumerate(zip(hs.tolist(), ws.tolist())):
            if h == 0:
                continue
            # the cropped grid is value tokens: transform the values and draw them again at the top-left
            out[i] = encode_canvas(dihedral_transform(canv[i, :h, :w], tid) - 2, c).reshape(c, c)
        return out.reshape(rows.shape)

    def augmentation(self, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
        """`versions` versions (module docstring) of rows of `seq_len` tokens: forward(int [B, S]) -> [K, B, S],
        inverse([K, B, S]) -> [K, B, S], dtype kept. inverse(forward(x)) == x for every plain row and every
        canvas row that holds an encoded grid (a canvas's cells outside its cropped grid are redrawn as EOS
        border and PAD). HrmkitError for more versions than exist or a seq_len that is not this task's."""
        self._check_seq_len(seq_len, "augmentation")
        specs = self.version_specs(versions, seed)
        luts = [self._luts(perm) for _, perm in specs]
        S = self.seq_len

        def forward(x: Any) -> np.ndarray:
            x = np.asarray(x)
            rows = x.reshape(-1, S)
            return np.stack([self._apply(rows, tid, fwd).reshape(x.shape) for (tid, _), (fwd, _) in zip(specs, luts)])

        def inverse(y: Any) -> np.ndarray:
            y = np.asarray(y)
            if y.shape[0] != versions:
                raise ValueError(f"inverse expects [{versions}, ..., {S}] tokens, got shape {y.shape}")
            # the colour map is cell-wise and the dihedral a rearrangement: undo both in reverse order
            return np.stack([self._apply(_map_tokens(y[k].reshape(-1, S), inv), inverse_dihedral(tid),
                                         np.arange(self.vocab_size)).reshape(y.shape[1:])
                             for k, ((tid, _), (_, inv)) in enumerate(zip(specs, luts))])

        return Augmentation(self.name, versions, forward, inverse)
