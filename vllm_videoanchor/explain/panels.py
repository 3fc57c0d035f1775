"""Where each visual token sits on the media: panels (a frame, an image, a tile) holding
a grid of token indices, per model family's layout.

The heatmap draws a token's value over the pixels it came from; each family lays its
tokens out differently (merged patches, pooled grids with newline rows, tiles).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..heatmap import Panel
from .media import Media


def token_panels(config, processor, inputs, items, media: Media) -> list[Panel]:
    """Panels covering every visual token once, per model family's layout."""
    counts = [int(item.visual.sum()) for item in items]
    starts = np.cumsum([0, *counts])
    if "video_grid_thw" in inputs or "image_grid_thw" in inputs:
        return _qwen_panels(config, inputs, starts, media)
    if config.model_type == "llava_onevision":
        return _llava_panels(config, items, starts, media)
    return _tile_panels(processor, inputs, counts[0], media)


def _qwen_panels(config, inputs, starts, media) -> list[Panel]:
    """Qwen-VL: each token is a merged block of patches; the processor resizes whole frames
    (no crop), so a token grid covers the whole frame. A video's token frame spans
    temporal_patch_size sampled frames."""
    merge = config.vision_config.spatial_merge_size
    if media.video is not None:
        frames, source = media.video[0], media.source_frames
        t, h, w = (int(x) for x in inputs["video_grid_thw"][0])
        per_frame = (h // merge) * (w // merge)
        panels = []
        for k in range(t):
            first, last = k * len(frames) // t, max(k * len(frames) // t, (k + 1) * len(frames) // t - 1)
            tokens = np.arange(k * per_frame, (k + 1) * per_frame).reshape(h // merge, w // merge)
            panels.append(Panel(f"frames {source[first]}-{source[last]}", frames[first], tokens))
        return panels
    panels = []
    for i, (image, grid) in enumerate(zip(media.images, inputs["image_grid_thw"])):
        _, h, w = (int(x) for x in grid)
        tokens = np.arange(starts[i], starts[i + 1]).reshape(h // merge, w // merge)
        panels.append(Panel(f"image {i}", np.asarray(image), tokens))
    return panels


def _square(n: int, what: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{what}: {n} tokens do not form a square grid")
    return side


def _llava_panels(config, items, starts, media) -> list[Panel]:
    """LLaVA-OneVision: a video's frames are pooled square grids (the closing newline row is
    not a visual token); an image is a square base view of the whole image, then the
    any-res view (unpadded, so it covers the whole image too) as rows closed by newlines."""
    if media.video is not None:
        frames, source = media.video[0], media.source_frames
        per_frame = int(starts[1]) // len(frames)
        side = _square(per_frame, "a video frame")
        return [Panel(f"frame {source[k]}", frames[k],
                      np.arange(k * per_frame, (k + 1) * per_frame).reshape(side, side))
                for k in range(len(frames))]
    base = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    panels = []
    for i, (image, item) in enumerate(zip(media.images, items)):
        pixels, start = np.asarray(image), int(starts[i])
        side = _square(base, "the base view")
        panels.append(Panel(f"image {i} base", pixels, np.arange(start, start + base).reshape(side, side)))
        newlines = np.flatnonzero(~item.visual.cpu().numpy())
        lengths = np.diff(np.concatenate([[base - 1], newlines])) - 1
        if len(newlines) and len(set(lengths.tolist())) == 1 and lengths[0] > 0:
            anyres = np.arange(start + base, int(starts[i + 1])).reshape(len(newlines), int(lengths[0]))
            panels.append(Panel(f"image {i} any-res", pixels, anyres))
    return panels


def _tile_panels(processor, inputs, count, media) -> list[Panel]:
    """InternVL: every tile (a video frame, an image or one of its tiles) is a square grid of
    tokens; the tile's own pixels (the processor's, de-normalised) are drawn under it."""
    tiles = inputs["pixel_values"].float().cpu()
    per_tile = count // len(tiles)
    side = _square(per_tile, "a tile")
    image_processor = processor.video_processor if media.video is not None else processor.image_processor
    mean = torch.tensor(image_processor.image_mean)[:, None, None]
    std = torch.tensor(image_processor.image_std)[:, None, None]
    pixels = ((tiles * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if media.video is not None and len(tiles) == len(media.source_frames):
        names = [f"frame {index}" for index in media.source_frames]
    else:
        name = "image" if len(tiles) == len(media.images) else "tile"
        names = [f"{name} {k}" for k in range(len(tiles))]
    return [Panel(names[k], pixels[k], np.arange(k * per_tile, (k + 1) * per_tile).reshape(side, side))
            for k in range(len(tiles))]
