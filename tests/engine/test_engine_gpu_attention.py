"""The CUDA attention backends' anchored path in pieces, for what no CPU engine runs.

TRITON_ATTN itself runs inside real CPU engines with our override (test_engine_plugin.py,
the test environment's VIDEOANCHOR_TEST_ATTENTION_BACKEND). What those engines cannot run
is tested here: FLASH_ATTN's builder and metadata (its kernels are compiled CUDA, not in the
CPU wheel), FLASHINFER (not installed), the HND storage order (the CPU engine picks NHD),
and step mixes an engine does not produce on demand. The stock kernel of each backend is
stood in for by plain causal attention over the same paged cache (`DenseStock`); everything of ours
runs for real: vLLM's own builders (FLASH_ATTN, TRITON_ATTN) on a CommonAttentionMetadata,
the impl mixin's forward, the gain write, the choice of rows, the KV views of the CUDA
cache layouts (NHD and HND storage), and the Triton kernel under the interpreter. The
results are checked against a dense float64 reference written here.

TRITON_INTERPRET must be set before triton is first imported: when another module of the
session imported it first, the kernel tests run in a fresh process
(`test_in_fresh_interpreter_process`), as in test_kernel_anchored_prefill.py.
"""

import os

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from fresh_process import triton_mode  # noqa: E402

triton = pytest.importorskip("triton")
IN_PROCESS = type(triton.language.standard.cdiv).__name__ == "InterpretedFunction"

from vllm.config import CompilationConfig, ModelConfig, VllmConfig, set_current_vllm_config  # noqa: E402
from vllm.v1.attention.backend import AttentionType, CommonAttentionMetadata  # noqa: E402
from vllm.v1.attention.backends.flash_attn import FlashAttentionImpl  # noqa: E402
from vllm.v1.attention.backends.registry import AttentionBackendEnum  # noqa: E402
from vllm.v1.attention.backends.triton_attn import TritonAttentionBackend, TritonAttentionImpl  # noqa: E402
from vllm.v1.kv_cache_interface import FullAttentionSpec  # noqa: E402

import vllm_videoanchor  # noqa: E402
from vllm_videoanchor.engine import availability, compat  # noqa: E402
from vllm_videoanchor.engine.attention import cuda as gpu_attention  # noqa: E402
from vllm_videoanchor.engine.attention import gains  # noqa: E402
from vllm_videoanchor.engine.attention.gains import GainState  # noqa: E402
from vllm_videoanchor.kernels import anchored_prefill  # noqa: E402, F401 - decorated while TRITON_INTERPRET is set

if _PREVIOUS_INTERPRET is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET

in_process, _interpret_env, test_in_fresh_interpreter_process = triton_mode(__file__, IN_PROCESS, interpret=True)

HQ, HKV, D, BLOCK = 4, 2, 32, 16
BUILDERS = [gpu_attention.AnchoredFlashAttentionMetadataBuilder, gpu_attention.AnchoredTritonAttentionMetadataBuilder]


@pytest.fixture(scope="module")
def vllm_config(tmp_path_factory):
    from vllm_videoanchor.testing.qwen_vl import build
    from vllm_videoanchor.testing.specs import SIZES

    model = build(tmp_path_factory.mktemp("model"), "qwen2_5_vl", 0, SIZES["small"])
    config = VllmConfig(model_config=ModelConfig(model=str(model), dtype="float32"))
    with set_current_vllm_config(config):
        yield config


@pytest.fixture
def state():
    """The gain state a model hands to the layers under test."""
    return GainState()


def with_state(impl, state):
    impl.gain_state = state
    return impl


# ------------------------------------------------------------------- a step, built for real

class Step:
    """One scheduler step over a paged cache: per request (context length after the step,
    tokens scheduled, still prefilling?), K/V of every context position, gains per position
    (1 for plain requests), padded with `pad` extra token rows (slot -1) as CUDA graphs pad."""

    def __init__(self, requests, *, layout="NHD", pad=3, seed=0, num_blocks=40):
        g = torch.Generator().manual_seed(seed)
        self.requests = requests
        self.num_blocks = num_blocks
        blocks = torch.randperm(num_blocks, generator=g)
        self.block_table = torch.zeros(len(requests), 8, dtype=torch.int32)
        at = 0
        for r, (ctx, _, _) in enumerate(requests):
            n = -(-ctx // BLOCK)
            self.block_table[r, :n] = blocks[at:at + n]
            at += n
        storage_shape = (num_blocks, BLOCK, HKV, 2 * D) if layout == "NHD" else (num_blocks, HKV, BLOCK, 2 * D)
        storage = torch.randn(storage_shape, generator=g)
        # the logical [blocks, heads, block_size, K|V] view every CUDA backend receives
        self.kv_cache = storage.permute(0, 2, 1, 3) if layout == "NHD" else storage
        self.key, self.value = compat.cuda_kv_views(self.kv_cache, D)
        q_lens = [q for _, q, _ in requests]
        self.starts = torch.tensor([0] + q_lens).cumsum(0).to(torch.int32)
        n_tokens = int(self.starts[-1])
        self.query = torch.randn(n_tokens + pad, HQ, D, generator=g)
        self.slots = []
        for r, (ctx, q, _) in enumerate(requests):
            pos = torch.arange(ctx - q, ctx)
            self.slots.append(self.block_table[r, pos // BLOCK].long() * BLOCK + pos % BLOCK)
        self.slot_mapping = torch.cat(self.slots + [torch.full((pad,), -1)])
        self.seq_lens = torch.tensor([ctx for ctx, _, _ in requests], dtype=torch.int32)
        self.n_tokens, self.pad = n_tokens, pad
        self.common = CommonAttentionMetadata(
            query_start_loc=self.starts, query_start_loc_cpu=self.starts, seq_lens=self.seq_lens,
            num_reqs=len(requests), num_actual_tokens=n_tokens, max_query_len=max(q_lens),
            max_seq_len=int(self.seq_lens.max()), block_table_tensor=self.block_table,
            slot_mapping=self.slot_mapping[:n_tokens],
            is_prefilling=torch.tensor([p for _, _, p in requests]), seq_lens_cpu_upper_bound=self.seq_lens)

    def metadata(self, builder_cls, vllm_config):
        spec = FullAttentionSpec(block_size=BLOCK, num_kv_heads=HKV, head_size=D, dtype=torch.float32)
        return builder_cls(spec, ["layer"], vllm_config, torch.device("cpu")).build(0, self.common)

    def context_slots(self, r):
        ctx = self.requests[r][0]
        pos = torch.arange(ctx)
        return self.block_table[r, pos // BLOCK].long() * BLOCK + pos % BLOCK

    def rows(self, r):
        return slice(int(self.starts[r]), int(self.starts[r + 1]))

    def attention(self, r, gain_k, gain_v):
        """Dense float64 anchored causal attention of request r's scheduled rows (gains
        per context position; all 1 is plain attention)."""
        ctx, q_len, _ = self.requests[r]
        slots = self.context_slots(r)
        k = self.key.reshape(-1, HKV, D)[slots].double().repeat_interleave(HQ // HKV, dim=1)
        v = self.value.reshape(-1, HKV, D)[slots].double().repeat_interleave(HQ // HKV, dim=1)
        q = self.query[self.rows(r)].double()
        scores = torch.einsum("qhd,khd->hqk", q, k) * D ** -0.5 + gain_k.double().log()
        q_pos = torch.arange(ctx - q_len, ctx)
        scores = scores.masked_fill(torch.arange(ctx)[None, :] > q_pos[:, None], float("-inf"))
        return torch.einsum("hqk,khd->qhd", torch.softmax(scores, -1) * gain_v.double(), v)


class DenseStock:
    """Stands in for vLLM's CUDA kernel (cannot run here): plain causal attention of every
    request over the paged cache, written into `output` like the stock forward."""

    def __init__(self, step):
        self.num_heads, self.head_size, self.scale = HQ, D, D ** -0.5
        self.kv_cache_dtype, self.attn_type = "auto", AttentionType.DECODER
        self.step = step
        self.calls = 0

    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None):
        self.calls += 1
        for r, (ctx, _, _) in enumerate(self.step.requests):
            ones = torch.ones(ctx)
            output[self.step.rows(r)] = self.step.attention(r, ones, ones).to(output.dtype)
        return output


class AnchoredDenseStock(gpu_attention.AnchoredImplMixin, DenseStock):
    pass


class StoresNoAttnType(DenseStock):
    """Like vLLM's FlashInferImpl: takes attn_type, never stores it."""

    def __init__(self, step, attn_type=AttentionType.DECODER):
        super().__init__(step)
        del self.attn_type


class AnchoredStoresNoAttnType(gpu_attention.AnchoredImplMixin, StoresNoAttnType):
    pass


def publish(state, step, gains_by_request):
    """What embed_input_ids publishes: the step's per-token gains (1 for plain tokens and
    the padded rows)."""
    gain_k = torch.ones(step.n_tokens + step.pad)
    gain_v = torch.ones_like(gain_k)
    for r, (gk, gv) in gains_by_request.items():
        ctx, q_len, _ = step.requests[r]
        gain_k[step.rows(r)] = gk[ctx - q_len:]
        gain_v[step.rows(r)] = gv[ctx - q_len:]
    state.publish_step((gain_k, gain_v))


def anchored_gains(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    gain_k = torch.where(torch.rand(ctx, generator=g) < 0.5, 1.0, 1.0 + 4 * torch.rand(ctx, generator=g))
    gain_v = torch.where(gain_k == 1.0, 1.0, 1.0 + torch.rand(ctx, generator=g))
    return gain_k, gain_v


# ------------------------------------------------------------------------------- tests

def test_backends_keep_vllms_names_and_are_registered():
    vllm_videoanchor.register()
    for name in ("FLASH_ATTN", "TRITON_ATTN"):
        backend = AttentionBackendEnum[name]
        assert backend.get_path() == vllm_videoanchor.ANCHORED_BACKENDS[name]
        cls = backend.get_class()
        assert cls.get_name() == name
        assert issubclass(cls.get_impl_cls(), gpu_attention.AnchoredImplMixin)
        assert issubclass(cls.get_builder_cls(), gpu_attention.AnchoredBuilderMixin)
    assert issubclass(gpu_attention.AnchoredFlashAttentionImpl, FlashAttentionImpl)
    assert issubclass(gpu_attention.AnchoredTritonAttentionImpl, TritonAttentionImpl)
    assert AttentionBackendEnum.FLASHINFER.get_path() == vllm_videoanchor.ANCHORED_BACKENDS["FLASHINFER"]


def test_flashinfer_subclass_imports_where_flashinfer_is_installed():
    pytest.importorskip("flashinfer")
    from vllm_videoanchor.engine.attention.flashinfer import AnchoredFlashInferBackend

    assert AnchoredFlashInferBackend.get_name() == "FLASHINFER"
    assert issubclass(AnchoredFlashInferBackend.get_impl_cls(), gpu_attention.AnchoredImplMixin)


@pytest.mark.parametrize("builder", BUILDERS)
def test_builders_carry_what_the_kernel_needs(builder, vllm_config):
    step = Step([(40, 40, True), (70, 1, False), (33, 1, True)])
    metadata = step.metadata(builder, vllm_config)
    seen = compat.step_metadata(metadata)
    assert seen.query_start_loc is step.common.query_start_loc
    assert seen.query_start_loc_cpu is step.common.query_start_loc_cpu
    assert seen.block_table is step.common.block_table_tensor and seen.seq_lens is step.common.seq_lens
    assert seen.is_prefilling is step.common.is_prefilling
    assert (seen.max_query_len, seen.max_seq_len, seen.num_actual_tokens) == (40, 70, step.n_tokens)
    assert torch.equal(seen.slot_mapping, step.slot_mapping[:step.n_tokens])


def test_rows_to_recompute_in_mixed_batches_and_one_token_prefills(vllm_config):
    """Decode rows stay plain; a one-token prefill row (a full prefix-cache hit recomputing
    the last prompt token) is recomputed; without `is_prefilling`, chunks of one token are
    taken for decodes."""
    step = Step([(40, 40, True), (70, 1, False), (33, 1, True), (20, 0, True), (50, 10, True)])
    seen = compat.step_metadata(step.metadata(BUILDERS[0], vllm_config))
    assert gains.prefilling_requests(seen) == [0, 2, 4]
    no_flags = compat.StepMetadata(**{**seen.__dict__, "is_prefilling": None})
    assert gains.prefilling_requests(no_flags) == [0, 4]


def test_gain_write_masks_padded_slots_and_covers_decode_rows(state, vllm_config):
    step = Step([(40, 40, True), (70, 1, False)], pad=5)
    metadata = step.metadata(BUILDERS[0], vllm_config)
    num_slots = step.num_blocks * BLOCK
    gain_k, gain_v = anchored_gains(40, seed=1)
    publish(state, step, {0: (gain_k, gain_v)})
    state.begin_step(metadata, num_slots, BLOCK)
    assert state.slot_gain_k.numel() == num_slots + 1  # the spare slot padded rows write
    assert torch.equal(state.slot_gain_k[step.slots[0]], gain_k)
    assert torch.equal(state.slot_gain_v[step.slots[0]], gain_v)
    touched = torch.zeros(num_slots + 1, dtype=torch.bool)
    touched[step.slots[0]] = True
    assert (state.slot_gain_k[~touched] == 1).all()  # padded rows (-1) did not write the last real slot
    # a later plain step (e.g. decode) that recycles an anchored slot resets its gains to 1
    recycled = Step([(70, 1, False)], pad=0)
    recycled.slot_mapping[:] = step.slots[0][5]
    recycled.common.slot_mapping = recycled.slot_mapping
    state.publish_step(None)
    state.begin_step(recycled.metadata(BUILDERS[0], vllm_config), num_slots, BLOCK)
    assert state.slot_gain_k[step.slots[0][5]] == 1 and state.slot_gain_v[step.slots[0][5]] == 1


def test_until_an_anchored_request_runs_a_step_is_the_stock_step(state, vllm_config):
    """No anchored request yet: the forward dispatches exactly the stock kernel's ops (no
    extra kernel, no allocation, no sync) and leaves its output bit for bit."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    step = Step([(40, 40, True), (70, 1, False)])
    metadata = step.metadata(BUILDERS[1], vllm_config)
    state.publish_step(None)
    runs = {}
    for name, impl in (("stock", DenseStock(step)), ("anchored", with_state(AnchoredDenseStock(step), state))):
        output = torch.zeros_like(step.query)
        with Ops() as ops:
            impl.forward(None, step.query, None, None, step.kv_cache, metadata, output)
        runs[name] = (ops.ops, output)
    assert runs["anchored"][0] == runs["stock"][0]
    assert torch.equal(runs["anchored"][1], runs["stock"][1])
    assert state.slot_gain_k is None


def test_which_requests_hold_gains_is_exact_and_bounded(state, vllm_config):
    """Full blocks are read from per-block flags, the last partial block slot by slot: no
    temporary grows with the context (it was [requests x tokens], 250 MB at 64 x 128k),
    and a recycled block's old gains past a context's end do not count."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Sizes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                self.largest = max(self.largest, out.numel())
            return out

    step = Step([(120, 120, True), (37, 5, True), (50, 50, True)])
    seen = compat.step_metadata(step.metadata(BUILDERS[0], vllm_config))
    rows = torch.tensor([0, 1, 2], dtype=torch.int32)
    num_slots = step.num_blocks * BLOCK

    def holds():
        with Sizes() as sizes:
            held = gains.context_holds_gains(seen, rows, state.block_anchored, state.slot_gain_k,
                                             state.slot_gain_v, BLOCK)
        n_blocks = -(-seen.max_seq_len // BLOCK)
        assert sizes.largest <= 3 * max(n_blocks, BLOCK) < 3 * seen.max_seq_len
        return held.tolist()

    state.store(step.context_slots(0), *anchored_gains(120, seed=1), num_slots, BLOCK)
    last_block = int(step.block_table[1, 37 // BLOCK])
    past_the_end = torch.tensor([last_block * BLOCK + 37 % BLOCK + 3])  # an old request's gain
    state.store(past_the_end, torch.tensor([3.0]), torch.tensor([2.0]), num_slots, BLOCK)
    assert holds() == [1, 0, 0]
    state.store(step.context_slots(1)[-2:], torch.tensor([1.0, 2.0]), torch.ones(2), num_slots, BLOCK)
    assert holds() == [1, 1, 0]
    state.store(step.context_slots(2)[20:21], torch.ones(1), torch.tensor([1.5]), num_slots, BLOCK)  # a full block
    assert holds() == [1, 1, 1]
    state.store(step.context_slots(2)[20:21], torch.ones(1), torch.ones(1), num_slots, BLOCK)  # rewritten plain
    assert holds() == [1, 1, 0]


@in_process
def test_a_backend_that_does_not_store_attn_type_still_anchors(state, vllm_config):
    """vLLM's FlashInferImpl never sets `attn_type` (FLASH_ATTN and TRITON_ATTN do): the
    anchored forward and the start-up check of the decoder layers still find it a decoder."""
    requests = [(40, 40, True), (30, 30, True)]
    step = Step(requests, seed=4)
    metadata = step.metadata(BUILDERS[0], vllm_config)
    anchored = {0: anchored_gains(40, 1)}
    publish(state, step, anchored)
    impl = with_state(AnchoredStoresNoAttnType(step), state)
    assert impl.attn_type == AttentionType.DECODER
    output = impl.forward(None, step.query, None, None, step.kv_cache, metadata, torch.zeros_like(step.query))
    ref = step.attention(0, *anchored[0])
    assert (output[step.rows(0)].double() - ref).abs().max() / ref.abs().max() < 1e-5

    class Layer(torch.nn.Module):  # what compat reads of vLLM's Attention layer
        def __init__(self):
            super().__init__()
            self.impl, self.attn_type = StoresNoAttnType(step), AttentionType.DECODER
            self.attn_backend = gpu_attention.AnchoredTritonAttentionBackend  # any backend class

    model = torch.nn.Sequential(Layer())
    assert [name for name, _, _ in compat.decoder_attention_layers(model)] == ["0"]


@in_process
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("builder", BUILDERS)
def test_forward_equals_dense_reference(layout, builder, state, vllm_config):
    """One step mixing: an anchored prompt (whole), a plain prompt, a decode row, an
    anchored request's one-token prefill over a cached context (prefix-cache hit), a later
    chunk of an anchored request, and padded rows. Anchored rows equal the dense anchored
    reference; plain and decode rows are the stock output bit for bit."""
    requests = [(40, 40, True), (30, 30, True), (60, 1, False), (45, 1, True), (70, 20, True)]
    step = Step(requests, layout=layout, seed=3)
    metadata = step.metadata(builder, vllm_config)
    anchored = {0: anchored_gains(40, 1), 3: anchored_gains(45, 2), 4: anchored_gains(70, 3)}
    # the cached context of requests 3 and 4 was written by earlier steps
    for r in (3, 4):
        state.store(step.context_slots(r), *anchored[r], step.num_blocks * BLOCK, BLOCK)
    state.live = True
    publish(state, step, anchored)

    stock = DenseStock(step).forward(None, step.query, None, None, step.kv_cache, metadata,
                                     torch.full_like(step.query, 7.0))
    impl = with_state(AnchoredDenseStock(step), state)
    output = impl.forward(None, step.query, None, None, step.kv_cache, metadata, torch.full_like(step.query, 7.0))
    for r, (ctx, _, _) in enumerate(requests):
        if r in anchored:
            ref = step.attention(r, *anchored[r])
            err = (output[step.rows(r)].double() - ref).abs().max() / ref.abs().max()
            assert err < 1e-5, (r, float(err))
        else:
            assert torch.equal(output[step.rows(r)], stock[step.rows(r)]), r
    assert (output[step.n_tokens:] == 7.0).all()  # padded rows untouched
    # the gains written at this step's slots are the published ones
    assert torch.equal(state.slot_gain_k[step.slots[0]], anchored[0][0])


def test_availability_names_the_backend_and_the_setting():
    def layer(impl_cls, backend=gpu_attention.AnchoredTritonAttentionBackend, **kwargs):
        args = dict(num_heads=HQ, head_size=D, scale=D ** -0.5, num_kv_heads=HKV, alibi_slopes=None,
                    sliding_window=None, kv_cache_dtype="auto")
        return ("model.layers.0.self_attn.attn", impl_cls(**{**args, **kwargs}), backend)

    ours = gpu_attention.AnchoredTritonAttentionImpl
    assert availability.layers_refusal([layer(ours)]) is None
    reason = availability.layers_refusal([layer(TritonAttentionImpl, TritonAttentionBackend)])
    assert "TRITON_ATTN" in reason and "--attention-backend" in reason
    assert "quantised KV cache" in availability.layers_refusal([layer(ours, kv_cache_dtype="fp8")])
    assert "sliding-window" in availability.layers_refusal([layer(ours, sliding_window=128)])
    assert "soft-capping" in availability.layers_refusal([layer(ours, logits_soft_cap=30.0)])
    assert availability.layers_refusal([]) == "no decoder attention layer found"
    piecewise, full = (SimpleNamespace(compilation_config=CompilationConfig(cudagraph_mode=mode))
                       for mode in ("PIECEWISE", "FULL_AND_PIECEWISE"))
    assert gpu_attention.AnchoredTritonAttentionBackend.anchoring_refusal(piecewise) is None
    reason = gpu_attention.AnchoredFlashAttentionBackend.anchoring_refusal(full)
    assert "FULL CUDA graphs" in reason and "PIECEWISE" in reason
