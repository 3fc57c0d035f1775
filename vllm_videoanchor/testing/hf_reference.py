"""Dense reference for anchored prefill: the tiny model run whole in Hugging Face transformers,
with an attention function written here from docs/method.md (float64, full causal matrix,
log-gain on key logits, gain on values), and, for Qwen2-VL / Qwen2.5-VL, vLLM's M-RoPE
position numbering passed in explicitly (transformers numbers text after a video
differently; Qwen3-VL's numbering agrees, LLaVA-OneVision and InternVL use plain positions).
Shares no code with the plugin: the gains it applies are given by the caller, and reach the
attention function as keyword arguments of the model's forward (transformers hands its
attention functions every keyword the forward did not take): no state outside the call.

InternVL: transformers takes every visual row at <IMG_CONTEXT>, while vLLM puts a video's
rows at its own video token (another id), so prompts are scored against vLLM's ids
(`target_ids`). The original InternVL format has no transformers implementation: its
tiny model holds the same weights as the Hugging Face-format one of the same seed, which
scores it, with the prompt as vLLM laid it out (`prompt_from_vllm`)."""

from __future__ import annotations

import numpy as np
import torch

from .. import visual_tokens

ATTENTION = "videoanchor_dense_reference"


def anchored_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, *,
                       videoanchor_gain_k=None, videoanchor_gain_v=None, **kwargs):
    """query [B, H, L, D], key/value [B, H_kv, L, D] -> ([B, L, H, D], probabilities), with
    per-position gains (float64 [L]; None: 1 everywhere)."""
    groups = query.shape[1] // key.shape[1]
    q = query.double()
    k = key.double().repeat_interleave(groups, dim=1)
    v = value.double().repeat_interleave(groups, dim=1)
    length = q.shape[2]
    ones = torch.ones(length, dtype=torch.float64)
    gain_k = ones if videoanchor_gain_k is None else videoanchor_gain_k
    gain_v = ones if videoanchor_gain_v is None else videoanchor_gain_v
    scores = q @ k.transpose(-1, -2) * scaling
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(future, float("-inf")) + gain_k.log()
    probs = torch.softmax(scores, dim=-1)
    out = probs @ (gain_v[:, None] * v)
    return out.transpose(1, 2).contiguous().to(query.dtype), probs.to(query.dtype)


def _register():
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(ATTENTION, anchored_attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)


class DenseReference:
    """Loads MODEL_DIR in transformers (float32) and scores prompts with given per-token gains."""

    def __init__(self, model_dir, prompt_from_vllm=False):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        _register()
        self.model_dir = model_dir
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation="eager").eval()
        self.model.config.text_config._attn_implementation = ATTENTION
        self.config = self.model.config
        self.qwen = "video_grid_thw" in self.processor.model_input_names
        self.internvl = self.config.model_type == "internvl"
        self.prompt_from_vllm = prompt_from_vllm
        # Qwen2-VL / Qwen2.5-VL: vLLM numbers text after a video differently from transformers
        self.vllm_positions = self.qwen and self.config.model_type != "qwen3_vl"

    def video_inputs(self, prompt, frames, meta, vllm_ids=None):
        if self.internvl:
            return self._internvl_inputs(prompt, {"videos": [frames]}, vllm_ids, video=True)
        return visual_tokens.processor_inputs(self.processor, self.config, prompt, videos=[frames],
                                              video_metadata=[meta])

    def image_inputs(self, prompt, images, vllm_ids=None):
        if self.internvl:
            return self._internvl_inputs(prompt, {"images": images}, vllm_ids, video=False)
        return self.processor(text=[prompt], images=images, return_tensors="pt")

    def _internvl_inputs(self, prompt, media, vllm_ids, video):
        inputs = self.processor(text=[prompt], **media, return_tensors="pt")
        context = self.config.image_token_id
        video_token = self.processor.tokenizer.convert_tokens_to_ids("<video>")
        if self.prompt_from_vllm:
            ids = torch.tensor([vllm_ids])
            inputs["input_ids"] = ids.masked_fill(ids == video_token, context)
            inputs["attention_mask"] = torch.ones_like(ids)
        targets = inputs["input_ids"].clone()
        if video:
            targets[targets == context] = video_token
        inputs["target_ids"] = targets
        return inputs

    def token_ids(self, inputs) -> list[int]:
        """The prompt's ids as vLLM numbers them."""
        return inputs.get("target_ids", inputs["input_ids"])[0].tolist()

    def placeholder_rows(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows that replace the video's (or all images') placeholders, in order, and
        which of them are visual tokens (visual_tokens.py: all but LLaVA-OneVision's newline rows)."""
        return visual_tokens.placeholder_rows(self.model, self.config, inputs)

    def visual_tokens(self, inputs) -> torch.Tensor:
        """The visual tokens of the video (or of all images, in order): [N, hidden]."""
        return visual_tokens.visual_tokens(self.model, self.config, inputs)

    def positions(self, inputs) -> torch.Tensor:
        """vLLM's M-RoPE numbering: text runs continue from the largest position so far + 1."""
        ids = inputs["input_ids"][0].tolist()
        merge = self.config.vision_config.spatial_merge_size
        t, h, w = (int(x) for x in inputs["video_grid_thw"][0])
        h, w = h // merge, w // merge
        seconds = inputs.get("second_per_grid_ts")
        t_factor = (float(seconds[0]) if seconds is not None else 1.0) * getattr(
            self.config.vision_config, "tokens_per_second", 1.0)
        start = ids.index(self.config.video_token_id)
        before = np.broadcast_to(np.arange(start), (3, start))
        grid = np.indices((t, h, w)).reshape(3, -1).astype(np.int64)
        grid[0] = (grid[0] * t_factor).astype(np.int64)
        video = grid + start
        rest = len(ids) - start - t * h * w
        after = np.broadcast_to(np.arange(rest), (3, rest)) + video.max() + 1
        return torch.from_numpy(np.concatenate([before, video, after], axis=1).copy())

    @torch.no_grad()
    def prompt_logprobs(self, inputs, gain_k=None, gain_v=None) -> np.ndarray:
        """log p(token i+1 | tokens <= i) for every prompt position, with per-position gains."""
        gains = {f"videoanchor_gain_{name}": torch.as_tensor(gain, dtype=torch.float64)
                 for name, gain in (("k", gain_k), ("v", gain_v)) if gain is not None}
        keys = ("pixel_values_videos", "pixel_values", "second_per_grid_ts", "video_grid_thw", "image_grid_thw",
                "mm_token_type_ids", "image_sizes", "batch_num_images")
        extra = {k: inputs[k] for k in keys if k in inputs}
        if self.vllm_positions and "video_grid_thw" in inputs:  # images: the two numberings agree
            extra["position_ids"] = self.positions(inputs)[:, None, :]
        logits = self.model(input_ids=inputs["input_ids"], **extra, **gains).logits[0]
        ids = inputs.get("target_ids", inputs["input_ids"])[0]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        return logprobs[:-1].gather(1, ids[1:, None])[:, 0].numpy()

    def per_position(self, inputs, token_values) -> np.ndarray:
        """Spreads per-visual-token values over the prompt: 1 at text positions and at
        placeholder rows that are not visual tokens (LLaVA-OneVision's newline rows)."""
        ids = inputs["input_ids"][0].numpy()
        out = np.ones(len(ids))
        # (InternVL: every visual row is at image_token_id in transformers' ids, videos too)
        token = self.config.image_token_id if "pixel_values" in inputs else self.config.video_token_id
        _, visual = self.placeholder_rows(inputs)
        out[np.flatnonzero(ids == token)[visual.numpy()]] = np.asarray(token_values, dtype=np.float64)
        return out
