"""What anchored requests cost everyone else on a shared server: the inter-token gaps and
token rate of plain streamed text requests, alone and beside media traffic.

    python benchmarks/interference.py --url http://localhost:8000 --model MODEL
    python benchmarks/interference.py ... --second-url http://localhost:8100   # e.g. another mode

Per endpoint, three phases of --seconds each: `alone` (--streams plain text streams, each
sending its next request as soon as the last one ends), `plain_media` (the same, plus one
client sending video requests without anchoring, one at a time) and `anchored_media` (that
client anchors them). Every media request carries a new synthetic mp4 (seeded), so neither
the encoder cache nor the prefix cache serves it. Reported per phase: the plain streams'
gaps between consecutive streamed chunks (p50 / p99 / max; the first chunk's wait, TTFT,
is not a gap), their tokens in the phase, and the media requests done. Writes
OUT/interference.json and OUT/interference.png (the gap distributions per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from pathlib import Path

import httpx
from load import percentile, synthetic_mp4

PHASES = ("alone", "plain_media", "anchored_media")
TEXT_PROMPT = "Write a long story about a lighthouse keeper and the sea."


async def plain_stream(client, url, model, max_tokens, deadline, gaps: list, tokens: list) -> None:
    """Back-to-back streamed text requests until the deadline; chunk gaps and tokens recorded."""
    while time.perf_counter() < deadline:
        body = {"model": model, "messages": [{"role": "user", "content": TEXT_PROMPT}], "max_tokens": max_tokens,
                "temperature": 0.0, "stream": True, "ignore_eos": True}
        last = None
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"plain stream: HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if not (chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content")):
                    continue
                now = time.perf_counter()
                if now > deadline:
                    return
                if last is not None:
                    gaps.append(now - last)
                last = now
                tokens.append(now)


async def media_client(client, url, model, anchor, seed: int, deadline, done: list) -> None:
    """One video request at a time until the deadline, each with a new synthetic video."""
    while time.perf_counter() < deadline:
        video = base64.b64encode(synthetic_mp4(seed)).decode()
        seed += 1
        body = {"model": model, "max_tokens": 1, "temperature": 0.0, "anchor": anchor,
                "messages": [{"role": "user", "content": [
                    {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{video}"}},
                    {"type": "text", "text": "What happens in this video?"}]}]}
        start = time.perf_counter()
        response = await client.post(url + "/v1/chat/completions", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"media request: HTTP {response.status_code}: {response.text[:200]}")
        done.append({"seconds": time.perf_counter() - start,
                     "anchor": response.headers.get("x-videoanchor-anchor"),
                     "solver_seconds": float(response.headers.get("x-videoanchor-solver-seconds", 0.0))})


async def run_phase(url, model, phase, args, seed) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.streams + 2)
    async with httpx.AsyncClient(timeout=600.0, headers=headers, limits=limits) as client:
        deadline = time.perf_counter() + args.seconds
        gaps, tokens, media = [], [], []
        jobs = [plain_stream(client, url, model, args.max_tokens, deadline, gaps, tokens)
                for _ in range(args.streams)]
        if phase != "alone":
            anchor = json.loads(args.anchor) if phase == "anchored_media" else False
            jobs.append(media_client(client, url, model, anchor, seed, deadline, media))
        await asyncio.gather(*jobs)
    ms = [g * 1000 for g in gaps]
    return {"phase": phase, "url": url, "gaps_ms": ms, "gap_p50_ms": percentile(ms, 0.5),
            "gap_p99_ms": percentile(ms, 0.99), "gap_max_ms": max(ms) if ms else None, "plain_tokens": len(tokens),
            "media_requests": len(media), "media": media}


def print_table(results: list[dict], seconds: float) -> None:
    print(f"\n| endpoint | phase | plain streams' gap p50 / p99 / max (ms) | plain tokens in {seconds:.0f} s "
          "| media requests (anchored: solver s each) |")
    print("|---|---|---|---|---|")
    for r in results:
        solver = [m["solver_seconds"] for m in r["media"] if m["anchor"] == "applied"]
        media = str(r["media_requests"]) + (f" ({sum(solver) / len(solver):.2f} s)" if solver else "")
        print(f"| {r['url']} | {r['phase']} | {r['gap_p50_ms']:.0f} / {r['gap_p99_ms']:.0f} / {r['gap_max_ms']:.0f} "
              f"| {r['plain_tokens']} | {media} |")
    by_url = {}
    for r in results:
        by_url.setdefault(r["url"], {})[r["phase"]] = r
    for url, phases in by_url.items():
        if "plain_media" in phases and "anchored_media" in phases:
            plain, anchored = phases["plain_media"], phases["anchored_media"]
            p99 = anchored["gap_p99_ms"] / plain["gap_p99_ms"]
            rate = anchored["plain_tokens"] / max(1, plain["plain_tokens"])
            print(f"{url}: anchored vs plain media traffic: p99 gap x{p99:.2f}, plain token rate x{rate:.2f}")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        gaps = sorted(r["gaps_ms"])
        if gaps:
            ax.plot(gaps, [(i + 1) / len(gaps) for i in range(len(gaps))], label=f"{r['url']} {r['phase']}")
    ax.set_xscale("log")
    ax.set_xlabel("gap between streamed chunks of plain requests (ms)")
    ax.set_ylabel("fraction of gaps at most this long")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--second-url", help="another endpoint measured the same way (e.g. another serving mode)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--streams", type=int, default=4, help="concurrent plain text streams")
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase")
    parser.add_argument("--max-tokens", type=int, default=256, help="per plain request (EOS ignored)")
    parser.add_argument("--anchor", default="true", help="the anchor option of the anchored phase, as JSON")
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--seed", type=int, default=1000, help="first seed of the synthetic videos")
    parser.add_argument("--out", default="interference-results")
    args = parser.parse_args(argv)

    results = []
    for url in [args.url] + ([args.second_url] if args.second_url else []):
        for i, phase in enumerate(args.phases):
            print(f"{url}: {phase} ({args.seconds:.0f} s)", flush=True)
            results.append(asyncio.run(run_phase(url.rstrip("/"), args.model, phase, args, args.seed + 1000 * i)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "interference.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    plot(results, out / "interference.png")
    print_table(results, args.seconds)
    print(f"wrote {out / 'interference.json'} and {out / 'interference.png'}")
    return results


if __name__ == "__main__":
    main()
