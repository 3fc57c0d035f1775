"""vLLM's FLASHINFER backend with the anchored prefill path (see cuda.py).

A module of its own: vLLM's FlashInfer backend imports the flashinfer package, which only
GPU installs have. FlashInfer's metadata carries no block table, seq lens or query starts
(and orders decodes first): the anchored path reads them from the CommonAttentionMetadata
the builder keeps, which describes the batch in the order the runner already reordered.
"""

from __future__ import annotations

from vllm.v1.attention.backends.flashinfer import (
    FlashInferBackend,
    FlashInferImpl,
    FlashInferMetadataBuilder,
)

from .cuda import AnchoredBuilderMixin, AnchoredCudaBackendMixin, AnchoredImplMixin


class AnchoredFlashInferMetadataBuilder(AnchoredBuilderMixin, FlashInferMetadataBuilder):
    pass


class AnchoredFlashInferImpl(AnchoredImplMixin, FlashInferImpl):
    pass


class AnchoredFlashInferBackend(AnchoredCudaBackendMixin, FlashInferBackend):
    """FLASHINFER with the anchored path; its name stays FLASHINFER."""

    @staticmethod
    def get_impl_cls():
        return AnchoredFlashInferImpl

    @staticmethod
    def get_builder_cls():
        return AnchoredFlashInferMetadataBuilder
