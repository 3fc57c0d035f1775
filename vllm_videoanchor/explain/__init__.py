"""Where the anchors fall on one video, or on a group of images anchored jointly
(`vllm-videoanchor explain MODEL MEDIA... [--out DIR] [--anchor JSON]`).

No engine and no decoder: the media are decoded by vLLM's own loaders (with the server's
`--media-io-kwargs`), the model's processor and vision tower give the visual tokens
(visual_tokens.py), and the plugin's solve (anchor.compute_anchor_gains, the model's
defaults under the given fields) gives each token its score and cluster. Written to DIR:
heatmap.png (scores over the frames / images / tiles the tokens came from), labels.png
(clusters) and anchors.json (per-token score, label and gains, the panels' token grids,
the solver's statistics). The engine tests check that the scores are the gains the engine
applies to the same request.

    media.py        the media, decoded as the server decodes them
    panels.py       where each visual token sits on them, per model family
    anchor_map.py   a server's anchor map (drawn instead of solving)
    explanation.py  the solve and its pictures and JSON; `explain`, `explain_media`
    cli.py          the command line
"""

from .anchor_map import gains_from_map, read_anchor_map
from .cli import main, parser
from .explanation import DTYPES, OUTPUTS, Explanation, default_device, explain, explain_media, model_dtype
from .media import IMAGE_SUFFIXES, Media, check_media_paths, load_media
from .panels import token_panels

__all__ = ["DTYPES", "IMAGE_SUFFIXES", "OUTPUTS", "Explanation", "Media", "check_media_paths", "default_device",
           "explain", "explain_media", "gains_from_map", "load_media", "main", "model_dtype", "parser",
           "read_anchor_map", "token_panels"]
