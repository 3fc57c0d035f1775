"""Pictures of one token set: per-token values drawn over the pictures the tokens came from.

A panel is one picture (a frame, an image, a tile) with the grid of token indices that
covers it; each token's value colours its cell. Panels go in rows of at most COLUMNS,
each scaled to CELL_HEIGHT pixels high and shown in grey under the colours, under a title
strip. Pillow only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLUMNS = 8
CELL_HEIGHT = 160
TITLE_HEIGHT = 18
FOOTER_HEIGHT = 18
OVERLAY_ALPHA = 0.6

# dark purple -> red -> yellow (an inferno-like ramp), interpolated over [0, 1]
RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
# twenty distinct colours for cluster labels (cycled beyond twenty)
PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
    [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [199, 199, 199],
    [219, 219, 141], [158, 218, 229]], dtype=np.uint8)


@dataclass
class Panel:
    """One picture the model saw, and the grid of token indices laid over it."""

    title: str
    pixels: np.ndarray  # (H, W, 3) uint8
    tokens: np.ndarray  # (rows, cols) indices into the token set


@dataclass(frozen=True)
class Grid:
    """How the panels are arranged in the picture."""

    columns: int
    rows: int
    cell_width: int
    cell_height: int = CELL_HEIGHT + TITLE_HEIGHT

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole picture in pixels."""
        return self.columns * self.cell_width, self.rows * self.cell_height + FOOTER_HEIGHT


def scaled_width(pixels: np.ndarray) -> int:
    height, width = pixels.shape[:2]
    return max(1, round(CELL_HEIGHT * width / height))


def grid_for(panels: list[Panel]) -> Grid:
    columns = min(len(panels), COLUMNS)
    rows = -(-len(panels) // columns)
    return Grid(columns, rows, max(scaled_width(p.pixels) for p in panels))


def ramp_colours(values: np.ndarray) -> np.ndarray:
    """uint8 RGB for values in [0, 1] (clipped)."""
    x = np.clip(values, 0.0, 1.0) * (len(RAMP) - 1)
    low = np.minimum(np.floor(x).astype(int), len(RAMP) - 2)
    t = (x - low)[..., None]
    return np.round(RAMP[low] * (1 - t) + RAMP[low + 1] * t).astype(np.uint8)


def label_colours(labels: np.ndarray) -> np.ndarray:
    return PALETTE[np.asarray(labels) % len(PALETTE)]


def draw(panels: list[Panel], token_colours: np.ndarray, footer: str):
    """A PIL image: every panel's picture with its tokens' colours blended over it."""
    from PIL import Image, ImageDraw

    if not panels:
        raise ValueError("nothing to draw: no panels")
    grid = grid_for(panels)
    canvas = Image.new("RGB", grid.size, (255, 255, 255))
    pen = ImageDraw.Draw(canvas)
    for index, panel in enumerate(panels):
        left = (index % grid.columns) * grid.cell_width
        top = (index // grid.columns) * grid.cell_height
        size = (scaled_width(panel.pixels), CELL_HEIGHT)
        # in grey, so that the overlay's colours read as values
        picture = Image.fromarray(np.ascontiguousarray(panel.pixels, dtype=np.uint8)).resize(size, Image.BILINEAR)
        picture = picture.convert("L").convert("RGB")
        overlay = Image.fromarray(token_colours[panel.tokens]).resize(size, Image.NEAREST)
        canvas.paste(Image.blend(picture, overlay, OVERLAY_ALPHA), (left, top + TITLE_HEIGHT))
        pen.text((left + 3, top + 3), panel.title, fill=(0, 0, 0))
    pen.text((3, grid.size[1] - FOOTER_HEIGHT + 3), footer, fill=(0, 0, 0))
    return canvas
