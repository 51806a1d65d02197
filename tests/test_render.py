"""The one grid renderer (hrmkit.data.render): display grids, text, SVG and PNG marks, thinking frames."""

import io

import numpy as np
import pytest
from PIL import Image

from hrmkit.data import arc, render
from hrmkit.tasks.sudoku import DIFF_COLOUR as SUDOKU_DIFF, MARK_FILL as SUDOKU_MARK


def test_reference_layouts_and_crop():
    """Only the three reference layouts are recognised from (vocab, seq_len); nothing else is guessed."""
    from hrmkit.data.format import infer_task
    from hrmkit.tasks.arc import crop_colours

    assert infer_task(11, 81) == "sudoku" and infer_task(6, 900) == "maze" and infer_task(12, 900) == "arc"
    assert infer_task(6, 16) is None and infer_task(8, 36) is None and infer_task(12, 10) is None
    canvas = np.zeros((30, 30), np.int64)
    canvas[4:6, 7:10] = [[2, 3, 4], [5, 6, 7]]  # a translated 2x3 grid, EOS after it
    canvas[6, 7:10] = 1
    assert crop_colours(canvas.reshape(-1)).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert crop_colours(np.zeros(900)) is None
    assert render.tokens_to_grid("arc", arc.encode_grid(np.array([[1, 2]]))).tolist() == [[1, 2]]


def test_text_marks():
    g = np.array([[1, 0, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]])
    assert render.grid_text(g, "sudoku")[:3] == ["1 . | 3 4", "3 4 | 1 2", "----+----"]
    marked = np.zeros((4, 4), bool)
    marked[0, 2] = True
    assert render.grid_text(g, "sudoku", marked=marked)[0] == " 1  . |[3] 4 "
    maze = np.array([["#", "S"], ["o", "G"]])
    assert render.grid_text(maze, "maze") == ["#S", "oG"]
    assert render.grid_text(maze, "maze", marked=[[False, False], [True, False]]) == ["# S ", "o*G "]
    assert render.grid_text(None, "arc")[0].startswith("(no grid")


def test_svg_marks_and_boxes():
    g = np.arange(9).reshape(3, 3)
    assert render.grid_svg(g, "arc").count('class="diff"') == 0
    marked = np.eye(3, dtype=bool)
    assert render.grid_svg(g, "arc", marked=marked).count('class="diff"') == 3
    s = np.ones((6, 6), int)
    svg = render.grid_svg(s, "sudoku", marked=np.eye(6, dtype=bool))
    assert svg.count(SUDOKU_DIFF) == 6 and svg.count(SUDOKU_MARK) == 6
    assert "invalid" in render.grid_svg(None, "arc")


def _rgb(img, x, y):
    return img.getpixel((int(x), int(y)))


def test_png_draws_colours_marks_and_clues():
    g = np.array([[0, 1], [2, 3]])
    img = render.grid_image(g, "arc", marked=[[False, True], [False, False]])
    cell = img.width // 2
    assert _rgb(img, cell * 0.5, cell * 1.5) == (255, 65, 54)  # colour 2 in the ARC palette, unmarked
    centre = _rgb(img, cell * 1.5, cell * 0.5)
    assert centre in ((0, 0, 0), (255, 255, 255))  # the cross over the blue cell
    assert _rgb(img, cell * 1.5 - cell * 0.35, cell * 0.5) == (0, 116, 217)  # the cell itself stays blue
    sud = render.grid_image(np.array([[1, 2], [0, 0]]), "sudoku", marked=[[False, True], [False, False]])
    c = sud.width // 2
    assert _rgb(sud, c * 1.5, c * 0.15) == (255, 214, 214)  # marked cell: pink
    assert _rgb(sud, c * 0.5, c * 0.15) == (255, 255, 255)
    png = render.png_bytes(render.tile([[(img, "a"), (sud, "b")]]))
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_segment_frames_and_gif():
    inp = np.array([2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])  # 4x4 Sudoku: one clue
    s1 = inp.copy()
    s1[1] = 3
    s2 = s1.copy()
    s2[[2, 3]] = [4, 5]
    frames = render.segment_frames("sudoku", inp, np.stack([s1, s2, s2]))
    assert [int(m.sum()) for _, m in frames] == [1, 2, 0]
    assert frames[1][0][0].tolist() == [1, 2, 3, 4]
    tiles = [[(render.grid_image(g, "sudoku", marked=m), f"segment {i}")] for i, (g, m) in enumerate(frames)]
    gif = Image.open(io.BytesIO(render.gif_bytes(tiles)))
    assert gif.format == "GIF" and gif.n_frames == 3
    with pytest.raises(ValueError):
        render.gif_bytes([])
