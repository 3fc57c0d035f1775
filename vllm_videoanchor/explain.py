"""`vllm-videoanchor explain MODEL MEDIA... [--out DIR] [--anchor JSON]`: where the anchors
fall on one video, or on a group of images anchored jointly.

No engine and no decoder: the media are decoded by vLLM's own loaders (with the server's
`--media-io-kwargs`), the model's processor and vision tower give the visual tokens
(visual_tokens.py), and the plugin's solve (anchor.compute_anchor_gains, the model's
defaults under the given fields) gives each token its score and cluster. Written to DIR:
heatmap.png (scores over the frames / images / tiles the tokens came from), labels.png
(clusters) and anchors.json (per-token score, label and gains, the panels' token grids,
the solver's statistics). The engine tests check that the scores are the gains the engine
applies to the same request.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import heatmap
from .anchor import AnchorGains, AnchorParams, compute_anchor_gains
from .engine.option import parse_anchor_option
from .heatmap import Panel
from .ssc.admm import NO_ADMM
from .visual_tokens import PLACEHOLDERS, checked_model_type, item_rows, load_vision_model, processor_inputs

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
OUTPUTS = {"heatmap": "heatmap.png", "labels": "labels.png", "anchors": "anchors.json"}


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
    from .engine import compat

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


@dataclass
class Explanation:
    """One token set's solve, and the panels that place its tokens on the media."""

    model: str
    architecture: str
    params: AnchorParams
    tokens: torch.Tensor  # (N, D) the visual tokens, as the plugin solves them
    gains: AnchorGains
    panels: list[Panel]
    media: Media
    source: str = "solve"  # or "server": an anchor map the server's engine applied

    def to_json(self) -> dict:
        gains = self.gains
        return {
            "model": self.model, "architecture": self.architecture, "modality": self.media.modality,
            "media": self.media.sources, "source": self.source, "params": self.params.model_dump(mode="json"),
            "solver": {"n_tokens": int(self.tokens.shape[0]), "n_features": int(self.tokens.shape[1]),
                       "seconds": gains.seconds, "n_iter": gains.n_iter, "converged": gains.converged,
                       "residual": gains.residual, "solver_mode": gains.solver_mode},
            "score": gains.score.tolist(), "label": gains.labels.tolist(),
            "gain_k": gains.gain_k.tolist(), "gain_v": gains.gain_v.tolist(),
            "panels": [{"title": p.title, "grid": list(p.tokens.shape), "tokens": p.tokens.tolist()}
                       for p in self.panels],
        }

    def write(self, out_dir) -> dict[str, Path]:
        """heatmap.png, labels.png, anchors.json under out_dir (created): their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {kind: out / name for kind, name in OUTPUTS.items()}
        score = self.gains.score.double().cpu().numpy()
        labels = self.gains.labels.cpu().numpy()
        n = len(score)
        heatmap.draw(self.panels, heatmap.ramp_colours(score),
                     f"anchor score, dark 0 to bright 1 ({n} tokens)").save(paths["heatmap"])
        heatmap.draw(self.panels, heatmap.label_colours(labels),
                     f"clusters ({int(labels.max()) + 1} for {n} tokens)").save(paths["labels"])
        paths["anchors"].write_text(json.dumps(self.to_json()))
        return paths


def explain_media(processor, model, media: Media, params: AnchorParams, model_name: str = "",
                  anchor_map: dict | None = None) -> Explanation:
    """The visual tokens of `media`, their solve, and where each token sits. With
    `anchor_map` (the server's explain route's JSON), its scores and labels are drawn
    instead of solving: exactly what the engine applied."""
    config = model.config
    video_text, image_text = PLACEHOLDERS[config.model_type]
    if media.video is not None:
        frames, metadata = media.video
        inputs = processor_inputs(processor, config, video_text, videos=[frames], video_metadata=[metadata])
    else:
        inputs = processor_inputs(processor, config, image_text * len(media.images), images=media.images)
    inputs = inputs.to(model.device)
    items = item_rows(model, config, inputs)
    tokens = torch.cat([item.rows[item.visual] for item in items]).float()
    if len(tokens) == 0:
        raise ValueError(f"media: {', '.join(media.sources) or 'the media'} gave no visual tokens")
    if anchor_map is not None:
        gains = gains_from_map(anchor_map, len(tokens), params)
    else:
        params.check_token_set(*tokens.shape)
        gains = compute_anchor_gains(tokens, params)
    panels = token_panels(config, processor, inputs, items, media)
    return Explanation(model_name, config.architectures[0], params, tokens, gains, panels, media,
                       "server" if anchor_map is not None else "solve")


def gains_from_map(anchor_map: dict, n_tokens: int, params: AnchorParams) -> AnchorGains:
    """AnchorGains holding a server's anchor map (no solver statistics: the server's
    response headers have them)."""
    try:
        score = torch.tensor(anchor_map["score"], dtype=torch.float32)
        labels = torch.tensor(anchor_map["label"], dtype=torch.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"--anchor-map: not an anchor map (score and label lists): {exc}") from exc
    if score.shape != (n_tokens,) or labels.shape != (n_tokens,):
        raise ValueError(f"--anchor-map has {len(score)} scores for {n_tokens} visual tokens: not this "
                         "video's map, or the server samples frames differently (--media-io-kwargs)")
    return AnchorGains(score=score, gain_k=1.0 + params.alpha_k * score, gain_v=1.0 + params.alpha_v * score,
                       labels=labels, stats=NO_ADMM, seconds=0.0)


def read_anchor_map(source: str, api_key: str | None = None) -> dict:
    """The JSON of a server's explain route, from its URL or a saved file."""
    import urllib.error
    import urllib.request

    try:
        if source.startswith(("http://", "https://")):
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            with urllib.request.urlopen(urllib.request.Request(source, headers=headers), timeout=60) as response:
                return json.loads(response.read())
        return json.loads(Path(source).read_text())
    except (OSError, urllib.error.URLError, json.JSONDecodeError) as exc:
        raise ValueError(f"--anchor-map: cannot read {source}: {exc}") from exc


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


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def explain(model_dir, paths: list[str], anchor: dict | bool | None = None, media_io_kwargs: dict | None = None,
            device: str | None = None, dtype: str = "auto", anchor_map: dict | None = None) -> Explanation:
    """Loads what is needed of the model and explains the media (see the module docstring).
    `anchor`: the request option (True or None: the model's defaults; a mapping: fields)."""
    from transformers import AutoConfig

    checked_model_type(model_dir)
    check_media_paths(paths)
    device = device or default_device()
    config = AutoConfig.from_pretrained(model_dir)
    params = parse_anchor_option(anchor or True, config.architectures[0])  # explain always anchors
    media = load_media(paths, media_io_kwargs, model_dir)
    processor, model = load_vision_model(model_dir, model_dtype(config, dtype), device)
    return explain_media(processor, model, media, params, model_name=str(model_dir), anchor_map=anchor_map)


def model_dtype(config, dtype: str = "auto") -> torch.dtype:
    """The vision tower's dtype: vLLM's default ("auto") is the checkpoint's own."""
    if dtype != "auto":
        return DTYPES[dtype]
    own = getattr(config, "dtype", None) or torch.float32
    return DTYPES.get(own, torch.float32) if isinstance(own, str) else own


def _json_arg(name: str):
    def parse(text: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{name} is not valid JSON: {exc}") from exc
    return parse


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-videoanchor explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="local checkpoint directory (no downloads)")
    parser.add_argument("media", nargs="+", help="one video file, or image files anchored jointly")
    parser.add_argument("--out", default="videoanchor-explain", help="output directory (default: %(default)s)")
    parser.add_argument("--anchor", type=_json_arg("--anchor"), default=None,
                        help='anchor fields as in a request, e.g. \'{"n_clusters": 8}\' (default: the model\'s)')
    parser.add_argument("--media-io-kwargs", type=_json_arg("--media-io-kwargs"), default=None,
                        help="the server's --media-io-kwargs, e.g. '{\"video\": {\"num_frames\": 16}}', so that "
                        "frames are sampled as the server samples them")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                        help="vision tower dtype: the server's --dtype (auto: the checkpoint's, as vLLM). In "
                        "bfloat16 transformers' and vLLM's vision towers round differently, so scores can "
                        "differ slightly from the server's: --anchor-map draws the server's own")
    parser.add_argument("--anchor-map", help="draw a server's anchor map instead of solving: the URL in an anchored "
                        "response's x-videoanchor-explain header (or its saved JSON)")
    parser.add_argument("--api-key", help="the server's API key, for --anchor-map URLs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.anchor is not None and not isinstance(args.anchor, (dict, bool)):
        parser().error("--anchor must be a JSON object of anchor fields (or true)")
    try:
        anchor_map = read_anchor_map(args.anchor_map, args.api_key) if args.anchor_map else None
        explanation = explain(args.model, args.media, args.anchor, args.media_io_kwargs, args.device, args.dtype,
                              anchor_map)
        paths = explanation.write(args.out)
    except (ValueError, FileNotFoundError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"vllm-videoanchor explain: error: {exc}", file=sys.stderr)
        return 2
    stats = explanation.gains
    solved = f"{stats.n_iter} ADMM iterations, {stats.seconds:.3f} s" if not args.anchor_map else "the server's map"
    print(f"{len(explanation.tokens)} visual tokens in {len(explanation.panels)} panels; {solved}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
