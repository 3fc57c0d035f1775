"""The engine's role in a disaggregated or offloading deployment (vLLM's EC and KV
transfer configs).

An encoder-only instance solves and hands the gains on; a decode-only one receives them
encoded; a KV connector moves the cache the gains live beside. Each changes what the
plugin may do, so the verdict reads the role here.
"""

from __future__ import annotations


def kv_connector(vllm_config) -> str | None:
    """The KV connector of this engine (vLLM turns --kv-offloading-size into one), or None."""
    config = vllm_config.kv_transfer_config
    return (config.kv_connector or "unnamed") if config is not None else None


def encoder_only(vllm_config) -> bool:
    """Whether this engine only encodes (the EC producer of encoder disaggregation, or
    --mm-encoder-only): it builds no language model and runs no decoder attention."""
    return bool(vllm_config.is_mm_encoder_only)


def ec_decode_only(vllm_config) -> bool:
    """Whether this engine is the prefill/decode side of vLLM's encoder disaggregation (an
    EC consumer that does not encode for others): its anchored items arrive encoded and
    solved through the EC connector."""
    config = vllm_config.ec_transfer_config
    return config is not None and config.is_ec_consumer and not config.is_ec_producer
