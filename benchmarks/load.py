"""Load test against any OpenAI-compatible endpoint: anchor on, anchor off and (optionally) a
stock vLLM endpoint, swept over concurrency, bounded in requests and in time.

    python benchmarks/load.py --url http://localhost:8000 --model MODEL --concurrency 1 4 16
    python benchmarks/load.py ... --stock-url http://localhost:8001     # add stock vLLM
    python benchmarks/load.py ... --soak-seconds 600 --concurrency 8 --server-pid PID

Connections that fail before any response (keep-alive races) are retried up to twice, as
the OpenAI SDK does, and reported in their own column; every other failure is an error.
Traffic is a mix of chat requests cycling over video (mp4 data URLs; --distinct-videos
synthetic ones unless --video is given), image and text prompts, streamed so that time to
first token (TTFT) and time per output token (TPOT) are measured per request. Per mode and
concurrency it reports throughput, TTFT p50/p95, TPOT p50 and error rate; writes
OUT/load.json and OUT/load.png (throughput and latency against concurrency). With
--soak-seconds it runs one long mixed run per mode instead, sampling the resident memory of
--server-pid and its children at start and end.

What it is for: what vLLM's own load generator, `vllm bench serve` (with `--extra-body
'{"anchor": true}'` for anchored load; `python benchmarks/vllm_bench_serve.py` where the
`vllm` command does not start), does not do: one run mixing video, image and text prompts,
anchored and plain interleaved; a stock vLLM endpoint measured in the same run; the soak run
with the server processes' memory. For plain throughput and latency sweeps, request-rate
schedules, goodput and SLOs use `vllm bench serve` (docs/benchmarks.md, "Load testing"); for
what anchored requests cost other users, benchmarks/interference.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

QUESTION = "How many chairs are in the room, and where is the table?"


@dataclass
class Sample:
    kind: str
    ok: bool
    ttft: float = 0.0
    e2e: float = 0.0
    output_tokens: int = 0
    error: str = ""
    retries: int = 0


def synthetic_mp4(seed: int, frames: int = 8, size: int = 112) -> bytes:
    """A small mp4 with a static textured scene and a moving square (needs OpenCV)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    scene = rng.uniform(0, 255, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "v.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 2.0, (size, size))
        for t in range(frames):
            frame = scene.copy()
            x = (t * size // frames) % (size - 16)
            frame[16:32, x:x + 16] = (40, 40, 220)
            writer.write(frame)
        writer.release()
        return Path(path).read_bytes()


def png(seed: int, size: int = 224) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def prompts(args) -> list[tuple[str, list]]:
    """(kind, messages) in the order requests cycle through them."""
    if args.video:
        videos = [Path(v).read_bytes() for v in args.video]
    else:
        videos = [synthetic_mp4(args.seed + i) for i in range(args.distinct_videos)]
    video_urls = ["data:video/mp4;base64," + base64.b64encode(v).decode() for v in videos]
    image_url = "data:image/png;base64," + base64.b64encode(png(0)).decode()
    mix = []
    for i, url in enumerate(video_urls):
        mix.append(("video", [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                          {"type": "text", "text": QUESTION}]}]))
        if "image" in args.mix and i % 2 == 0:
            mix.append(("image", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                                              {"type": "text", "text": QUESTION}]}]))
        if "text" in args.mix and i % 2 == 1:
            mix.append(("text", [{"role": "user", "content": QUESTION}]))
    return [p for p in mix if p[0] in args.mix]


class _NoResponse(Exception):
    """The connection failed before any response arrived: the server never answered it."""


async def one_request(client, url, model, kind, messages, extra, max_tokens, attempts=3) -> Sample:
    """Streams one chat completion. A connection that fails before the response starts (a
    keep-alive connection the server closed as it was reused) is retried, as the OpenAI SDK
    does, and counted; any failure after that is an error."""
    for attempt in range(attempts):
        try:
            sample = await _stream_once(client, url, model, kind, messages, extra, max_tokens)
        except _NoResponse as exc:
            if attempt == attempts - 1:
                return Sample(kind, False, error=str(exc), retries=attempt)
            continue
        sample.retries = attempt
        return sample


async def _stream_once(client, url, model, kind, messages, extra, max_tokens) -> Sample:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    start = time.perf_counter()
    ttft, tokens, started = None, 0, False
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            started = True
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return Sample(kind, False, error=f"HTTP {response.status_code}: {text[:200]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content") and ttft is None:
                    ttft = time.perf_counter() - start
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    except (httpx.HTTPError, ValueError) as exc:
        if not started and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError)):
            raise _NoResponse(f"{type(exc).__name__}: {exc}") from exc
        return Sample(kind, False, error=f"{type(exc).__name__}: {exc}")
    e2e = time.perf_counter() - start
    return Sample(kind, True, ttft=ttft if ttft is not None else e2e, e2e=e2e, output_tokens=tokens)


async def run_level(url, model, extras, mix, concurrency, n_requests, seconds, max_tokens, api_key, desc,
                    memory_pid=None, memory_every=60.0):
    """n_requests (or until `seconds` pass) with `concurrency` in flight; request i gets prompt
    i of the mix and an option of `extras` that shifts every pass, so every prompt meets every
    option."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    work = ((mix[i % len(mix)], extras[(i + i // len(mix)) % len(extras)]) for i in itertools.count())
    samples: list[Sample] = []
    deadline = time.perf_counter() + seconds
    started = 0
    bar = tqdm(total=n_requests if n_requests < 10**9 else None, desc=desc, unit="req", leave=False)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), headers=headers, limits=limits) as client:

        async def worker():
            nonlocal started
            while started < n_requests and time.perf_counter() < deadline:
                started += 1
                (kind, messages), extra = next(work)
                samples.append(await one_request(client, url, model, kind, messages, extra, max_tokens))
                bar.update(1)

        memory: list = []
        sampler = asyncio.create_task(sample_memory(memory_pid, memory_every, memory)) if memory_pid else None
        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
        if sampler:
            sampler.cancel()
            memory.append((round(elapsed, 1), process_tree_rss(memory_pid)))
    bar.close()
    return samples, elapsed, memory


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarise(mode, concurrency, samples, elapsed) -> dict:
    ok = [s for s in samples if s.ok]
    tpot = [(s.e2e - s.ttft) / (s.output_tokens - 1) for s in ok if s.output_tokens > 1]
    return {
        "mode": mode, "concurrency": concurrency, "requests": len(samples), "errors": len(samples) - len(ok),
        "retried": sum(1 for s in samples if s.retries),
        "error_rate": (len(samples) - len(ok)) / len(samples) if samples else 0.0, "seconds": elapsed,
        "requests_per_s": len(ok) / elapsed if elapsed else 0.0,
        "output_tokens_per_s": sum(s.output_tokens for s in ok) / elapsed if elapsed else 0.0,
        "ttft_p50_s": percentile([s.ttft for s in ok], 0.5), "ttft_p95_s": percentile([s.ttft for s in ok], 0.95),
        "tpot_p50_s": percentile(tpot, 0.5), "e2e_p50_s": percentile([s.e2e for s in ok], 0.5),
        "first_errors": sorted({s.error for s in samples if not s.ok})[:3],
    }


def process_tree_rss(pid: int) -> dict[str, int]:
    """Resident bytes of a process and each of its descendants, by "name pid" (Linux /proc)."""
    found, stack = {}, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            name = next(row.split(None, 1)[1].strip() for row in status.splitlines() if row.startswith("Name:"))
            rss = int(next(row.split()[1] for row in status.splitlines() if row.startswith("VmRSS:"))) * 1024
            found[f"{name} {current}"] = rss
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return found


async def sample_memory(pid: int, every: float, into: list) -> None:
    """Appends (seconds since start, {process: rss}) every `every` seconds until cancelled."""
    start = time.perf_counter()
    while True:
        into.append((round(time.perf_counter() - start, 1), process_tree_rss(pid)))
        await asyncio.sleep(every)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in dict.fromkeys(r["mode"] for r in results):
        rows = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["concurrency"])
        x = [r["concurrency"] for r in rows]
        left.plot(x, [r["output_tokens_per_s"] for r in rows], marker="o", label=mode)
        line, = right.plot(x, [r["ttft_p50_s"] for r in rows], marker="o", label=f"{mode} TTFT p50")
        right.plot(x, [r["ttft_p95_s"] for r in rows], marker="x", linestyle="--", color=line.get_color(),
                   label=f"{mode} TTFT p95")
    left.set(xlabel="concurrency", ylabel="output tokens / s", title="Throughput", xscale="log", xticks=x)
    right.set(xlabel="concurrency", ylabel="seconds", title="Time to first token", xscale="log", xticks=x)
    for axis in (left, right):
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(results: list[dict]) -> None:
    print("| mode | concurrency | requests | errors | retried | req/s | output tok/s | TTFT p50 ms | TTFT p95 ms "
          "| TPOT p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['retried']} | "
              f"{r['requests_per_s']:.2f} | "
              f"{r['output_tokens_per_s']:.1f} | {r['ttft_p50_s'] * 1e3:.0f} | {r['ttft_p95_s'] * 1e3:.0f} | "
              f"{r['tpot_p50_s'] * 1e3:.1f} |")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="our server, e.g. http://localhost:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--stock-url", help="a stock vLLM server with the same model (plain requests)")
    parser.add_argument("--modes", nargs="+", default=["anchor_on", "anchor_off"],
                        choices=("anchor_on", "anchor_off", "mixed"), help="mixed: anchor on and off alternately")
    parser.add_argument("--anchor", default="true", help="the anchor option for anchor_on, as JSON")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--requests", type=int, default=32, help="per mode and concurrency level")
    parser.add_argument("--seconds", type=float, default=120.0, help="time bound per mode and level")
    parser.add_argument("--soak-seconds", type=float, help="one long run per mode at the first concurrency")
    parser.add_argument("--server-pid", type=int, help="sample the memory of this process and its children")
    parser.add_argument("--memory-every", type=float, default=60.0, help="seconds between memory samples")
    parser.add_argument("--seed", type=int, default=0, help="first seed of the synthetic videos (new ones: new seed)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--mix", nargs="+", default=["video", "image", "text"], choices=("video", "image", "text"))
    parser.add_argument("--video", nargs="+", help="mp4 files (default: synthetic ones)")
    parser.add_argument("--distinct-videos", type=int, default=16)
    parser.add_argument("--out", default="load-results")
    args = parser.parse_args(argv)

    mix = prompts(args)
    on, off = {"anchor": json.loads(args.anchor)}, {"anchor": False}
    extras = {"anchor_on": [on], "anchor_off": [off], "mixed": [on, off]}
    endpoints = [(m, args.url, extras[m]) for m in args.modes]
    if args.stock_url:
        endpoints.append(("stock", args.stock_url, [{}]))
    results, memory = [], {}
    levels = [args.concurrency[0]] if args.soak_seconds else args.concurrency
    n_requests = 10**9 if args.soak_seconds else args.requests
    seconds = args.soak_seconds or args.seconds
    for mode, url, mode_extras in endpoints:
        for concurrency in levels:
            samples, elapsed, rss = asyncio.run(run_level(
                url.rstrip("/"), args.model, mode_extras, mix, concurrency, n_requests, seconds, args.max_tokens,
                args.api_key, f"{mode} c={concurrency}", args.server_pid, args.memory_every))
            results.append(summarise(mode, concurrency, samples, elapsed))
            if rss:
                memory[f"{mode} c={concurrency}"] = {"samples": rss, "rss_start_bytes": sum(rss[0][1].values()),
                                                     "rss_end_bytes": sum(rss[-1][1].values())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"args": vars(args), "results": results, "memory": memory}
    (out / "load.json").write_text(json.dumps(report, indent=2))
    plot(results, out / "load.png")
    print_table(results)
    for name, m in memory.items():
        first = m["samples"][0][1]
        print(f"memory {name}: {m['rss_start_bytes'] / 2**20:.0f} MiB -> {m['rss_end_bytes'] / 2**20:.0f} MiB")
        for process in first:
            trail = " ".join(f"{s[1].get(process, 0) / 2**20:.0f}" for s in m["samples"])
            print(f"  {process}: {trail} MiB (every {args.memory_every:.0f} s, start to end)")
    print(f"wrote {out / 'load.json'} and {out / 'load.png'}")
    return report


if __name__ == "__main__":
    main()
