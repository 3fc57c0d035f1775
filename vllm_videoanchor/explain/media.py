"""The media of one explained request, decoded as the server decodes them.

The tokens explain solves must be the ones the server's engine solved, so the frames come
from vLLM's own loaders (engine.compat), sampled with the server's `--media-io-kwargs`;
paths are checked before any model weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class Media:
    """One request's media: a video as (frames, metadata), or a group of images."""

    video: tuple[np.ndarray, dict] | None = None
    images: list = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return "video" if self.video is not None else "image"

    @property
    def source_frames(self) -> list[int]:
        """The video's frames' indices in the file (the loader may sample)."""
        frames, metadata = self.video
        return list(metadata.get("frames_indices") or range(len(frames)))


def check_media_paths(paths: list[str]) -> list[str]:
    """The image files among `paths` (all or none). FileNotFoundError / ValueError naming the
    problem: checked before any model weights are read."""
    if not paths:
        raise ValueError("media: give one video file, or one or more image files")
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"media: no such file: {path}")
    images = [p for p in paths if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    if images and len(images) != len(paths) or not images and len(paths) > 1:
        raise ValueError("media: give one video file, or image files only (anchored jointly)")
    return images


def load_media(paths: list[str], media_io_kwargs: dict | None = None, model_dir=None) -> Media:
    """Decodes one video file or several image files as the server would (for a video, with
    the loader vLLM picks for the model's video processor class). ValueError (or
    FileNotFoundError) naming the file on bad input."""
    from ..engine import compat

    kwargs = media_io_kwargs or {}
    images = check_media_paths(paths)
    try:
        if images:
            return Media(images=[compat.load_image_file(p, kwargs.get("image")) for p in paths], sources=paths)
        frames, metadata = compat.load_video_file(paths[0], kwargs.get("video"), model_dir)
    except Exception as exc:  # noqa: BLE001 - every decoder failure becomes one clear message
        raise ValueError(f"media: cannot decode {', '.join(paths)}: {exc}") from exc
    frames = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"media: no frames decoded from {paths[0]}")
    return Media(video=(frames, metadata), sources=paths)
