"""A server's anchor map (its explain route's JSON), read and turned into gains.

Drawing what the engine applied, rather than solving again, shows exactly the server's
clusters (transformers' and vLLM's vision towers round differently in bf16).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..anchor import AnchorGains, AnchorParams
from ..ssc.admm import NO_ADMM


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
