"""Media decoded as the server decodes them, with vLLM's own loaders.

`explain` must see the frames the server's engine saw (same sampling, same decoder), so it
goes through vLLM's media IO classes rather than its own decoder.
"""

from __future__ import annotations


def load_video_file(path, media_io_kwargs: dict | None = None, model_dir=None):
    """(frames, metadata) of a video file, decoded and sampled as the server's media connector
    does: with the server's `--media-io-kwargs` video settings, and the loader vLLM registers
    for the model's video processor class (e.g. Qwen2VLVideoProcessor's samples by fps)."""
    from pathlib import Path

    from vllm.multimodal.media.image import ImageMediaIO
    from vllm.multimodal.media.video import VideoMediaIO
    from vllm.multimodal.video import get_video_loader_backend_for_processor
    from vllm.transformers_utils.processor import get_video_processor_cls_name_from_config

    kwargs = dict(media_io_kwargs or {})
    video_processor = get_video_processor_cls_name_from_config(str(model_dir)) if model_dir else None
    if "video_backend" not in kwargs and (backend := get_video_loader_backend_for_processor(video_processor)):
        kwargs["video_backend"] = backend
    return VideoMediaIO(ImageMediaIO(), **kwargs).load_file(Path(path)).media


def load_image_file(path, media_io_kwargs: dict | None = None):
    """A PIL image (RGB) as vLLM's image loader decodes it."""
    from pathlib import Path

    from vllm.multimodal.media.image import ImageMediaIO

    return ImageMediaIO(**(media_io_kwargs or {})).load_file(Path(path)).media
