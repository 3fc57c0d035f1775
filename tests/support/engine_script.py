"""Runs the tiny model in vLLM's CPU engine (in its own process) and prints JSON results.

    python tests/support/engine_script.py MODEL_DIR [--chunk N] [--compiled] [--plain-only] [--dtype D]
                                                    [--no-prefix-caching] [--anchors NAME,...]
    python tests/support/engine_script.py MODEL_DIR --runs '{"NAME": {RUN}, ...}'

Used by the engine tests: the process runs with or without the plugin (VLLM_PLUGINS) and
reports tokens and logprobs for a video, an image and a text prompt, and what happens to
requests that carry the `anchor` option (all of ANCHORS, a mixed batch, anchored images and
bad options: EXTRAS; with --anchors, only the named ANCHORS, and no EXTRAS), and what the engine built (`engine`:
its decoder layers' attention impl and backend, its anchoring verdict, and the verdict its
layers would get under each CUDA graph mode).

With --runs, one process starts one engine per run, one after the other (a process start
and vLLM's import cost more than an engine), and prints {NAME: results}. A RUN takes the
flags' keys (chunk, compiled, plain_only, dtype, prefix_caching, anchors, extras: a list of
EXTRAS) and `env`: variables set
for that engine only (e.g. the attention kernel, vLLM's model runner); a run that fails
reports {"error": ...} and the next one still runs.
"""

import gc
import json
import os
import time
import traceback
from contextlib import contextmanager

from vllm_videoanchor.testing import specs
from vllm_videoanchor.testing.engine_run import (  # noqa: F401 - re-exported for the tests
    PROMPT,
    image_item,
    placeholders,
    record_solves,
    summary,
    video_item,
)

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
JOINT_IMAGES = 4  # images of the multi-view request
ANCHORS = {
    "anchored": {"n_clusters": 4},
    "anchored_again": {"n_clusters": 4},  # identical: a prefix-cache / encoder-cache hit
    "other_alpha_q": {"n_clusters": 4, "alpha_q": 1.0},  # alpha_q has no effect: also a cache hit
    "zero_alphas": {"n_clusters": 4, "alpha_k": 0.0, "alpha_v": 0.0},
    "keys_only": {"n_clusters": 4, "alpha_v": 0.0},
    "one_cluster": {"n_clusters": 1},
    "defaults": True,
    "kmeans": {"method": "kmeans", "n_clusters": 4},  # the paper's ablations
    "uniform": {"method": "uniform"},
    "failing": {"n_clusters": 4, "alpha_z": 1e308},  # the solver fails (overflow): served plain
}


@contextmanager
def native_pos_embed():
    """Qwen3-VL's vision tower interpolates position embeddings with a Triton kernel of
    vLLM's wherever vLLM sees Triton. In this CPU test environment that kernel runs in
    Triton's interpreter, where it turns bfloat16 into NaN and costs about 40 % of a tiny
    Qwen3-VL engine's run (measured: 28 s against 17 s for the workload). It is vLLM's kernel,
    not ours, and compiled on a GPU, so every engine here (stock vLLM's too) takes vLLM's
    native torch version of it (for this engine only: restored on leaving)."""
    from vllm.model_executor.models import qwen3_vl

    kernel = qwen3_vl.triton_pos_embed_interpolate
    qwen3_vl.triton_pos_embed_interpolate = qwen3_vl.pos_embed_interpolate_native
    try:
        yield
    finally:
        qwen3_vl.triton_pos_embed_interpolate = kernel


@contextmanager
def run_environment(env: dict):
    """`env` set for one engine, and every cache of a variable that engine start-up reads
    forgotten before and after (vLLM's envs cache, the plugin's settings and CPU kernel
    choice), so that each engine of the process reads its own."""
    from vllm import envs

    from vllm_videoanchor import settings

    saved = {name: os.environ.get(name) for name in env}

    def forget():
        envs.disable_envs_cache()
        settings.process_settings.cache_clear()

    os.environ.update(env)
    forget()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        forget()


def count_kernel_launches() -> list:
    """Counts the Triton anchored prefill kernel's launches in this process ([count]), so that
    a run can show which implementation served its anchored requests (nothing outside the
    kernel's own module sees a launch, so this wraps it)."""
    from vllm_videoanchor.kernels import anchored_prefill

    count, launch = [0], anchored_prefill.anchored_prefill_attention

    def counting(*args, **kwargs):
        count[0] += 1
        return launch(*args, **kwargs)

    anchored_prefill.anchored_prefill_attention = counting
    return count


_RECORDERS = {}


def recorders(plain_only: bool) -> tuple[list, list]:
    """(solves, [kernel launches]) of this process, installed once."""
    if "launches" not in _RECORDERS:
        _RECORDERS["launches"] = count_kernel_launches()
    if not plain_only and "solves" not in _RECORDERS:
        _RECORDERS["solves"] = record_solves()
    return _RECORDERS.get("solves", []), _RECORDERS["launches"]


def engine_facts(llm) -> dict:
    """What the engine built: its decoder layers' impl and backend classes, the anchoring
    verdict it reached at start-up, and the verdict the same layers get under each CUDA graph
    mode (the CPU platform itself always runs NONE)."""
    import copy

    from vllm.config import CompilationConfig

    from vllm_videoanchor.engine import compat
    from vllm_videoanchor.engine.availability import engine_verdict

    vllm_config = llm.llm_engine.vllm_config  # in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)

    def facts(model):
        if not hasattr(model, "_anchor_unavailable"):  # stock vLLM's model
            return {"attention": sorted({type(impl).__name__ for _, impl, _ in compat.decoder_attention_layers(model)})}
        by_mode = {}
        for mode in ("NONE", "PIECEWISE", "FULL", "FULL_AND_PIECEWISE"):
            config = copy.copy(vllm_config)
            object.__setattr__(config, "compilation_config", CompilationConfig(cudagraph_mode=mode))
            by_mode[mode] = engine_verdict(config, model)
        layers = compat.decoder_attention_layers(model)
        return {"attention": sorted({type(impl).__name__ for _, impl, _ in layers}),
                "backend": sorted({backend.get_name() for _, _, backend in layers}),
                "anchor_unavailable": model._anchor_unavailable, "verdict_by_graph_mode": by_mode}

    return llm.apply_model(facts)[0]


EXTRAS = ("batch", "anchored_image", "joint_images", "errors")  # the workload's parts beyond ANCHORS


def main(model, chunk=2048, compiled=False, plain_only=False, dtype="float32", prefix_caching=True,
         anchors=None, extras=EXTRAS) -> dict:
    from vllm import LLM

    solves, launches = recorders(plain_only)
    launched = launches[0]
    # the original InternVL format's config class is local code written by the tiny builder
    remote_code = specs.model_spec(model).trust_remote_code
    llm = LLM(model=model, max_model_len=2048, enforce_eager=not compiled, dtype=dtype, trust_remote_code=remote_code,
              limit_mm_per_prompt={"video": 1, "image": JOINT_IMAGES}, max_num_batched_tokens=chunk,
              enable_chunked_prefill=True, enable_prefix_caching=prefix_caching)
    try:
        results = requests(llm, model, solves, plain_only, anchors, extras, launches)
        return results | {"kernel_launches": launches[0] - launched, "engine": engine_facts(llm)}
    finally:
        del llm
        gc.collect()


def requests(llm, model, solves: list, plain_only: bool, anchors, extras, launches: list) -> dict:
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=4, temperature=0.0, logprobs=3, prompt_logprobs=2)
    video, image = placeholders(model)
    prompts = {
        "video": {"prompt": PROMPT.format(media=video), "multi_modal_data": {"video": video_item()}},
        "image": {"prompt": PROMPT.format(media=image), "multi_modal_data": {"image": image_item()}},
        "text": {"prompt": PROMPT.format(media="")},
        "images": {"prompt": PROMPT.format(media=image * JOINT_IMAGES),
                   "multi_modal_data": {"image": [image_item(seed) for seed in range(1, JOINT_IMAGES + 1)]}},
    }
    before_plain = launches[0]
    results = {name: summary(out) for name, out in zip(prompts, llm.generate(list(prompts.values()), params))}
    results["kernel_launches_plain"] = launches[0] - before_plain  # before any anchored request ran
    results["runner"] = "v2" if llm.llm_engine.vllm_config.use_v2_model_runner else "v1"
    if plain_only:
        return results
    for name, option in ANCHORS.items():
        if anchors is not None and name not in anchors:
            continue
        prompt = dict(prompts["video"], mm_processor_kwargs={"anchor": option})
        before = len(solves)
        results[name] = summary(llm.generate(prompt, params)[0])
        results[name]["solves"] = solves[before:]
    if "batch" in extras:  # one batch mixing plain and anchored requests on the same and another video
        other = dict(prompts["video"], multi_modal_data={"video": video_item(seed=5)})
        batch = [dict(prompts["video"], mm_processor_kwargs={"anchor": ANCHORS["anchored"]}),
                 prompts["video"], prompts["text"],
                 dict(other, mm_processor_kwargs={"anchor": ANCHORS["keys_only"]})]
        results["batch"] = [summary(out) for out in llm.generate(batch, params)]

    # an anchored image, and several images anchored jointly
    for name, prompt in (("anchored_image", prompts["image"]), ("joint_images", prompts["images"])):
        if name not in extras:
            continue
        before = len(solves)
        results[name] = summary(llm.generate(dict(prompt, mm_processor_kwargs={"anchor": {"n_clusters": 4}}),
                                             params)[0])
        results[name]["solves"] = solves[before:]
    if "errors" not in extras:
        return results
    bad = dict(prompts["video"], mm_processor_kwargs={"anchor": {"alpha_k": -1}})
    too_many = dict(prompts["video"], mm_processor_kwargs={"anchor": {"n_clusters": 1000}})
    for name, prompt in (("anchor_bad", bad), ("anchor_too_many_clusters", too_many)):
        try:
            llm.generate(prompt, params)
            results[name] = "accepted"
        except Exception as exc:  # the engine must answer with an error, then keep serving
            results[name] = f"{type(exc).__name__}: {exc}"
    results["after_errors"] = summary(llm.generate(prompts["video"], params)[0])
    return results


def run(model, env=None, dtype="float32", **flags) -> dict:
    """One engine of a --runs process: its results, or {"error": ...} if it failed."""
    start = time.perf_counter()
    try:
        with run_environment(env or {}), native_pos_embed():
            return main(model, dtype=dtype, **flags) | {"seconds": time.perf_counter() - start}
    except Exception:  # noqa: BLE001 - reported to the test that asked for this run
        return {"error": traceback.format_exc()[-4000:], "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("--plain-only", action="store_true")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-prefix-caching", action="store_true")
    parser.add_argument("--anchors", type=lambda names: names.split(","), help="only these ANCHORS")
    parser.add_argument("--runs", type=json.loads, help="several engines, one after the other: {name: run}")
    args = parser.parse_args()
    if args.runs is not None:
        print("RESULTS " + json.dumps({name: run(args.model, **spec) for name, spec in args.runs.items()}))
    else:
        with native_pos_embed():
            results = main(args.model, args.chunk, args.compiled, args.plain_only, args.dtype,
                           not args.no_prefix_caching, args.anchors, EXTRAS if args.anchors is None else ())
        print("RESULTS " + json.dumps(results))
