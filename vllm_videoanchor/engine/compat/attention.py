"""What the anchored backends read of vLLM's attention: the step's metadata and the
model's attention layers.

CPU_ATTN and the CUDA backends name their metadata differently; `StepMetadata` gives the
anchored path one view of both, without a device-to-host sync.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class StepMetadata:
    """The attention-metadata fields the anchored path reads (CPU_ATTN's names), with the
    host copies it needs to decide without a device-to-host sync."""

    num_actual_tokens: int
    max_query_len: int
    max_seq_len: int
    slot_mapping: torch.Tensor
    query_start_loc: torch.Tensor
    query_start_loc_cpu: torch.Tensor
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    is_prefilling: torch.Tensor | None


# the attribute under which the CUDA builders leave the step's CommonAttentionMetadata
COMMON_METADATA_ATTR = "videoanchor_common"


def step_metadata(metadata) -> StepMetadata:
    """CPU_ATTN's metadata holds everything on the host; the CUDA backends' metadata carries
    the CommonAttentionMetadata it was built from (FlashInfer's has no block table, seq
    lens or query starts of its own), with host copies of the query starts."""
    common = getattr(metadata, COMMON_METADATA_ATTR, None)
    if common is None:
        return StepMetadata(metadata.num_actual_tokens, metadata.max_query_len, metadata.max_seq_len,
                            metadata.slot_mapping, metadata.query_start_loc, metadata.query_start_loc,
                            metadata.seq_lens, metadata.block_table, getattr(metadata, "is_prefilling", None))
    return StepMetadata(metadata.num_actual_tokens, common.max_query_len, common.max_seq_len,
                        metadata.slot_mapping, common.query_start_loc, common.query_start_loc_cpu,
                        common.seq_lens, common.block_table_tensor, common.is_prefilling)


def copy_is_prefilling(metadata, common_attn_metadata) -> None:
    """Builders hand `is_prefilling` (a CPU bool per request) on to the impl."""
    metadata.is_prefilling = common_attn_metadata.is_prefilling


def keep_common_metadata(metadata, common_attn_metadata) -> None:
    """CUDA builders keep the step's CommonAttentionMetadata on their metadata (a reference:
    nothing is copied or computed for plain steps)."""
    setattr(metadata, COMMON_METADATA_ATTR, common_attn_metadata)


def decoder_attention_layers(model) -> list[tuple[str, object, type]]:
    """(name, impl, backend class) of every decoder self-attention layer of a constructed
    model (vLLM's Attention layers carry `impl` and `attn_backend`)."""
    from vllm.v1.attention.backend import AttentionType

    layers = []
    for name, module in model.named_modules():
        impl, backend = getattr(module, "impl", None), getattr(module, "attn_backend", None)
        # the layer's type, not the impl's: FLASHINFER's impl never stores it
        if impl is not None and backend is not None and getattr(module, "attn_type", None) == AttentionType.DECODER:
            layers.append((name, impl, backend))
    return layers
