"""`vllm-videoanchor selftest`: is anchoring right on this vLLM install and device?

Builds a tiny random-weight model offline, runs it in this machine's vLLM with and without
the plugin (each engine in its own process), and checks:

  plain == stock vLLM          plain requests with the plugin give stock vLLM's logprobs, bit for bit
  anchoring changes the answer anchored prompt logprobs move away from plain ones
  anchored == dense reference  vLLM's anchored prompt logprobs equal a dense transformers run with
                               hand-written anchored attention and vLLM's own gains
  uniform == dense reference   the `uniform` ablation (gains known in closed form, no solver)
                               equals the dense run with those gains
  cache hit == first           an identical anchored request (prefix / encoder cache hit) equals the first
  chunked == whole             (--chunked) 32-token chunks give the whole prefill's answer

It prints a table (check, result, measured error, tolerance) and exits 1 if any check
fails. Run it first on a new install or device, and attach its output to bug reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine_run import parse_results

ANCHORED = {"n_clusters": 4}
UNIFORM = {"method": "uniform"}
TOLERANCE = {"float32": 5e-5, "float16": 2e-2, "bfloat16": 5e-2}  # dense reference vs vLLM
MIN_EFFECT = 1e-2  # anchoring must move some prompt logprob by more than this


@dataclass
class Check:
    name: str
    passed: bool
    error: float | None = None
    tolerance: str = ""
    detail: str = ""


# --- the engine side (a worker process) -------------------------------------------------

def worker(model: str, mode: str, dtype: str, chunk: int, backend: str | None) -> dict:
    """Runs the requests in this process's vLLM and returns their summaries."""
    from vllm import LLM, SamplingParams

    from . import model_spec
    from .engine_run import PROMPT, image_item, placeholders, record_solves, summary, video_item

    solves = record_solves() if mode == "plugin" else []
    kwargs = {"attention_backend": backend} if backend else {}
    from ..engine import compat
    from ..engine.attention.forward import PIECEWISE_GRAPHS

    if compat.is_cuda_platform():  # what `vllm-videoanchor serve` runs: PIECEWISE CUDA graphs, compiled
        kwargs["compilation_config"] = PIECEWISE_GRAPHS
    else:
        kwargs["enforce_eager"] = True
    llm = LLM(model=model, max_model_len=2048, dtype=dtype, trust_remote_code=model_spec(model).trust_remote_code,
              limit_mm_per_prompt={"video": 1, "image": 1}, max_num_batched_tokens=chunk,
              enable_chunked_prefill=True, enable_prefix_caching=True, **kwargs)
    params = SamplingParams(max_tokens=4, temperature=0.0, logprobs=3, prompt_logprobs=2)
    video, image = placeholders(model)
    plain = {"video": {"prompt": PROMPT.format(media=video), "multi_modal_data": {"video": video_item()}},
             "image": {"prompt": PROMPT.format(media=image), "multi_modal_data": {"image": image_item()}},
             "text": {"prompt": PROMPT.format(media="")}}
    results = {name: summary(out) for name, out in zip(plain, llm.generate(list(plain.values()), params))}
    results["runner"] = "V2" if llm.llm_engine.vllm_config.use_v2_model_runner else "V1"
    if mode == "plugin":
        for name, option in (("anchored", ANCHORED), ("anchored_again", ANCHORED), ("uniform", UNIFORM)):
            before = len(solves)
            results[name] = summary(llm.generate(dict(plain["video"], mm_processor_kwargs={"anchor": option}),
                                                 params)[0])
            results[name]["solves"] = solves[before:]
    return results


def run_worker(model: Path, mode: str, args) -> dict:
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if mode == "stock":
        env["VLLM_PLUGINS"] = ""
    command = [sys.executable, "-m", "vllm_videoanchor.testing.selftest", "--worker", str(model), "--mode", mode,
               "--dtype", args.dtype, "--chunk", str(args.chunk_size if mode == "chunked" else 2048)]
    if args.attention_backend:
        command += ["--attention-backend", args.attention_backend]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    results = parse_results(out.stdout)
    if out.returncode != 0 or results is None:
        raise RuntimeError(f"the {mode} engine failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return results


# --- the checks -------------------------------------------------------------------------

def dense_reference(model: Path, workdir: Path):
    from . import build_tiny_model, model_spec
    from .hf_reference import DenseReference

    if model_spec(model).model_type == "internvl_chat":  # scored by its Hugging Face-format twin
        return DenseReference(build_tiny_model(workdir / "twin", "internvl"), prompt_from_vllm=True)
    return DenseReference(model)


def check_arch(arch: str, args, workdir: Path) -> list[Check]:
    from . import build_tiny_model
    from .engine_run import PROMPT, max_logprob_diff, placeholders, prompt_logprobs, video_item

    model = build_tiny_model(workdir / arch, arch)
    stock, ours = run_worker(model, "stock", args), run_worker(model, "plugin", args)
    # which of vLLM's model runners this engine runs (V2 on GPUs from vLLM 0.32 on, the only one in 0.34)
    checks = [Check(f"{arch}: model runner", ours["runner"] == stock["runner"], tolerance="same as stock vLLM",
                    detail=f"Model Runner {ours['runner']}")]
    for kind in ("video", "image", "text"):
        diff = max_logprob_diff(ours[kind], stock[kind])
        same = ours[kind]["tokens"] == stock[kind]["tokens"] and diff == 0.0
        checks.append(Check(f"{arch}: plain {kind} == stock vLLM", same, diff, "bit for bit"))
    effect = float(np.abs(prompt_logprobs(ours["anchored"]) - prompt_logprobs(ours["video"])).max())
    checks.append(Check(f"{arch}: anchoring changes the answer", effect > MIN_EFFECT, effect, f"> {MIN_EFFECT:g}"))

    tolerance = TOLERANCE[args.dtype]
    dense = dense_reference(model, workdir)
    frames, meta = video_item()
    inputs = dense.video_inputs(PROMPT.format(media=placeholders(model)[0]), frames, meta,
                                vllm_ids=ours["video"]["prompt_token_ids"])
    solves = ours["anchored"]["solves"]
    if len(solves) != 1:
        checks.append(Check(f"{arch}: anchored == dense reference", False, detail=f"{len(solves)} solves, expected 1"))
    else:
        expected = dense.prompt_logprobs(inputs, dense.per_position(inputs, solves[0]["gain_k"]),
                                         dense.per_position(inputs, solves[0]["gain_v"]))
        error = float(np.abs(prompt_logprobs(ours["anchored"]) - expected).max())
        checks.append(Check(f"{arch}: anchored == dense reference", error <= tolerance, error, f"<= {tolerance:g}"))
    from ..anchor import AnchorParams

    n = len(dense.visual_tokens(inputs))
    defaults = AnchorParams()
    expected = dense.prompt_logprobs(inputs, dense.per_position(inputs, np.full(n, 1 + defaults.alpha_k)),
                                     dense.per_position(inputs, np.full(n, 1 + defaults.alpha_v)))
    error = float(np.abs(prompt_logprobs(ours["uniform"]) - expected).max())
    checks.append(Check(f"{arch}: uniform == dense reference", error <= tolerance, error, f"<= {tolerance:g}"))

    diff = max_logprob_diff(ours["anchored_again"], ours["anchored"])
    checks.append(Check(f"{arch}: cache hit == first", diff <= 1e-6 and not ours["anchored_again"]["solves"], diff,
                        "<= 1e-06, no second solve"))
    if args.chunked:
        chunked = run_worker(model, "chunked", args)
        diff = max(max_logprob_diff(chunked[name], ours[name]) for name in ("video", "anchored", "uniform"))
        checks.append(Check(f"{arch}: chunked == whole ({args.chunk_size}-token chunks)", diff <= 1e-5, diff,
                            "<= 1e-05"))
    return checks


def print_table(checks: list[Check], header: str) -> None:
    print(header)
    width = max(len(c.name) for c in checks)
    print(f"{'check':<{width}}  result  error      tolerance")
    for c in checks:
        error = "" if c.error is None else f"{c.error:.2e}"
        print(f"{c.name:<{width}}  {'PASS' if c.passed else 'FAIL':<6}  {error:<9}  {c.tolerance} {c.detail}".rstrip())
    failed = [c.name for c in checks if not c.passed]
    print(f"\nselftest: {'passed' if not failed else 'FAILED: ' + '; '.join(failed)}")


def environment() -> str:
    import torch

    import vllm_videoanchor

    try:
        from importlib.metadata import version

        vllm_version = version("vllm") if _installed("vllm") else version("vllm-cpu") + " (cpu)"
    except Exception:  # noqa: BLE001 - a report line, never a failure
        vllm_version = "unknown"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return (f"vllm-videoanchor {vllm_videoanchor.__version__}, vLLM {vllm_version}, torch {torch.__version__}, "
            f"device: {device}")


def _installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


def parser() -> argparse.ArgumentParser:
    from . import ARCHS

    p = argparse.ArgumentParser(prog="vllm-videoanchor selftest", description=__doc__.split("\n")[0])
    p.add_argument("--arch", nargs="+", default=["qwen2_5_vl"], choices=ARCHS, help="tiny models to check")
    p.add_argument("--attention-backend", help="vLLM attention backend to run (default: vLLM's choice)")
    p.add_argument("--dtype", default="float32", choices=tuple(TOLERANCE))
    p.add_argument("--chunked", action="store_true", help="also check chunked prefill")
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--timeout", type=int, default=900, help="seconds per engine run")
    p.add_argument("--keep", help="build the models here (kept) instead of a temporary directory")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # the engine side, in its own process
        w = argparse.ArgumentParser()
        w.add_argument("--worker")
        w.add_argument("--mode", choices=("stock", "plugin", "chunked"))
        w.add_argument("--dtype")
        w.add_argument("--chunk", type=int)
        w.add_argument("--attention-backend")
        a = w.parse_args(argv)
        mode = "plugin" if a.mode == "chunked" else a.mode
        print("RESULTS " + json.dumps(worker(a.worker, mode, a.dtype, a.chunk, a.attention_backend)), flush=True)
        return 0
    args = parser().parse_args(argv)
    checks = []
    with tempfile.TemporaryDirectory(prefix="videoanchor-selftest-") as tmp:
        workdir = Path(args.keep or tmp)
        for arch in args.arch:
            try:
                checks += check_arch(arch, args, workdir)
            except Exception as exc:  # noqa: BLE001 - a failed run is a failed check, reported
                checks.append(Check(f"{arch}: engine runs", False, detail=str(exc).strip().splitlines()[-1][:300]))
    print_table(checks, environment())
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
