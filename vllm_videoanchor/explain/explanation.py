"""One explained token set: its solve, and the panels that place its tokens on the media;
written as heatmap.png, labels.png and anchors.json.

`explain` loads what is needed of the model (processor and vision tower, no decoder) and
`explain_media` does the rest, so the engine tests can explain with a model they hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import heatmap
from ..anchor import AnchorGains, AnchorParams, compute_anchor_gains
from ..engine.option import parse_anchor_option
from ..heatmap import Panel
from ..visual_tokens import PLACEHOLDERS, checked_model_type, item_rows, load_vision_model, processor_inputs
from .anchor_map import gains_from_map
from .media import Media, check_media_paths, load_media
from .panels import token_panels

OUTPUTS = {"heatmap": "heatmap.png", "labels": "labels.png", "anchors": "anchors.json"}


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


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def explain(model_dir, paths: list[str], anchor: dict | bool | None = None, media_io_kwargs: dict | None = None,
            device: str | None = None, dtype: str = "auto", anchor_map: dict | None = None) -> Explanation:
    """Loads what is needed of the model and explains the media (see the package docstring).
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
