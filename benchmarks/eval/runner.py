r"""Spatial video QA against an OpenAI-compatible endpoint, once per anchor variant.

Each question goes to the endpoint once per variant (anchor off, on, or any anchor option);
the scores are reported side by side with each variant's gain over the first.

    python -m benchmarks.eval QUESTIONS.jsonl --url http://localhost:8000 --out results/ \
        [--variant kmeans='{"method": "kmeans"}'] [--concurrency 4] [--num-frames 32]

Every finished (question, variant) answer is appended at once to OUT/answers.jsonl; a
re-run with the same --out sends only what is not there yet, so an interrupted run resumes
and new variants can be added later. Answers keep the raw response text: scoring happens at
report time, so changing --parse re-scores without sending anything.
Connections that fail are retried (twice); a request refused as bad (HTTP 400, 413, 422) is
a final, failed answer (scored 0); anything else (401, 404, 429, 5xx, timeouts, a server
that stays unreachable) is left unrecorded, to be sent again by the next run, and makes the
exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from . import report
from .questions import Question, QuestionFileError, load_questions, video_url
from .scoring import PARSE_MODES

DEFAULT_VARIANTS = {"off": False, "on": True}
RETRIED = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
# the request itself is bad (an option the server refuses, an undecodable or too large video):
# sending it again gives the same; other 4xx (401 key, 404 model, 429) are not the question's fault
FINAL_CLIENT_ERRORS = (400, 413, 422)


def parse_variant(text: str) -> tuple[str, bool | dict | None]:
    """NAME=JSON, where JSON is the request's `anchor` value: true, false, an object of
    anchor options, or null (send no `anchor` field: the server's default)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    try:
        anchor = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"variant {name!r}: not valid JSON ({exc.msg}): {value!r}") from None
    if not isinstance(anchor, (bool, dict)) and anchor is not None:
        raise argparse.ArgumentTypeError(f"variant {name!r}: anchor must be true, false, null or an object")
    return name.strip(), anchor


def request_body(question: Question, anchor, settings: dict, file_urls: bool) -> dict:
    """VSI-Bench's prompt after the video, greedy, short; `anchor` top level (our server's
    option), sent as given, also `false`, so that "off" does not depend on the server's
    default."""
    content = [{"type": "video_url", "video_url": {"url": video_url(question.video, file_urls)}},
               {"type": "text", "text": question.prompt()}]
    body = {"model": settings["model"], "messages": [{"role": "user", "content": content}],
            "max_tokens": settings["max_tokens"], "temperature": 0.0}
    if anchor is not None:
        body["anchor"] = anchor
    if settings["num_frames"]:
        body["media_io_kwargs"] = {"video": {"num_frames": settings["num_frames"]}}
    return body


async def ask(client: httpx.AsyncClient, url: str, body: dict, attempts: int = 3) -> dict:
    """One chat completion: the answer record's fields. Raises RuntimeError when there is no
    final answer (to be sent again by the next run)."""
    for attempt in range(attempts):
        start = time.perf_counter()
        try:
            response = await client.post(url + "/v1/chat/completions", json=body)
            break
        except RETRIED as exc:
            if attempt == attempts - 1:
                raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc
            await asyncio.sleep(0.5 * (attempt + 1))
        except httpx.HTTPError as exc:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - start
    headers = {k: v for k, v in response.headers.items() if k.startswith("x-videoanchor")}
    if response.status_code in FINAL_CLIENT_ERRORS:
        try:
            error = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            error = response.text[:500]
        return {"response": None, "status": response.status_code, "error": error, "headers": headers,
                "seconds": seconds}
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
    try:
        text = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RuntimeError(f"malformed response: {response.text[:300]}") from exc
    return {"response": text or "", "status": 200, "error": None, "headers": headers, "seconds": seconds}


def load_answers(path: Path) -> dict[tuple[str, str], dict]:
    """Answers already recorded. A last line cut short (the run was killed while writing it)
    is dropped from the file."""
    if not path.exists():
        return {}
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        path.write_text(text)
        print(f"dropped an incomplete last line of {path}", file=sys.stderr)
    answers = {}
    for line in text.splitlines():
        record = json.loads(line)
        answers[record["id"], record["variant"]] = record
    return answers


def check_settings(answers: dict, settings: dict[str, dict]) -> list[str]:
    """Recorded answers of a variant must come from the same requests as this run's."""
    problems = set()
    for (_, name), record in answers.items():
        if name in settings and record["settings"] != settings[name]:
            problems.add(f"variant {name!r} was recorded with {json.dumps(record['settings'])}, "
                         f"this run asks for {json.dumps(settings[name])}")
    return sorted(problems)


async def run(questions: list[Question], variants: dict, settings: dict[str, dict], answers: dict,
              args, path: Path) -> dict:
    """Sends every (question, variant) not in `answers`, adding each answer to it and to the
    file at `path` as it comes; returns the run's counts."""
    todo = [(q, name) for q in questions for name in variants if (q.id, name) not in answers]
    counts = {"sent": len(todo), "skipped": len(questions) * len(variants) - len(todo), "answered": 0,
              "failed": 0, "unanswered": 0, "first_error": None}
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    semaphore = asyncio.Semaphore(args.concurrency)
    bar = tqdm(total=len(todo), desc="eval", unit="req")

    async def one(client, question, name):
        async with semaphore:
            body = await asyncio.to_thread(request_body, question, variants[name], settings[name], args.file_urls)
            try:
                result = await ask(client, args.url, body)
            except RuntimeError as exc:
                counts["unanswered"] += 1
                counts["first_error"] = counts["first_error"] or str(exc)
                bar.update(1)
                return
        record = {"id": question.id, "variant": name, "settings": settings[name], **result}
        answers[question.id, name] = record
        with path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        counts["answered" if result["status"] == 200 else "failed"] += 1
        bar.update(1)

    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout), headers=headers, limits=limits) as client:
        await asyncio.gather(*(one(client, q, name) for q, name in todo))
    bar.close()
    return counts


def served_model(url: str, api_key: str | None) -> str:
    """The first model the endpoint serves (GET /v1/models)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(url + "/v1/models", headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()["data"][0]["id"]


def first_per_type(questions: list[Question], limit: int | None) -> list[Question]:
    if limit is None:
        return questions
    seen: dict[str, int] = {}
    kept = []
    for q in questions:
        seen[q.question_type] = seen.get(q.question_type, 0) + 1
        if seen[q.question_type] <= limit:
            kept.append(q)
    return kept


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval", description=__doc__.split("\n")[0])
    parser.add_argument("questions", help="JSON-lines question file (ours or VSI-Bench's rows)")
    parser.add_argument("--url", required=True, help="the endpoint, e.g. http://localhost:8000")
    parser.add_argument("--model", help="model name to send (default: the first one the endpoint serves)")
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"), help="default: $VLLM_API_KEY")
    parser.add_argument("--out", default="eval-results", help="answers.jsonl, results.json, scores.png go here")
    parser.add_argument("--video-root", help="VSI-Bench rows: videos are VIDEO_ROOT/{dataset}/{scene_name}.mp4")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[], metavar="NAME=JSON",
                        help="add a variant (or redefine off/on) whose requests carry anchor=JSON; "
                             "the variants are off, on, then these; the first is the baseline")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=16, help="VSI-Bench's max_new_tokens")
    parser.add_argument("--num-frames", type=int, help="frames the server samples per video "
                                                       "(media_io_kwargs.video.num_frames; default: the server's)")
    parser.add_argument("--parse", choices=PARSE_MODES, default="vsibench",
                        help="answer extraction: VSI-Bench's (default) or lenient (see scoring.py)")
    parser.add_argument("--limit", type=int, help="only the first N questions of each question type")
    parser.add_argument("--file-urls", action="store_true",
                        help="send local videos as file:// URLs instead of data URLs (server needs "
                             "--allowed-local-media-path)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    args = parser.parse_args(argv)
    args.url = args.url.rstrip("/")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        questions = first_per_type(load_questions(args.questions, args.video_root), args.limit)
    except QuestionFileError as exc:
        print(f"{args.questions}: {len(exc.problems)} problem(s):\n{exc}", file=sys.stderr)
        return 2
    variants = {**DEFAULT_VARIANTS, **dict(args.variant)}
    try:
        model = args.model or served_model(args.url, args.api_key)
    except httpx.HTTPError as exc:
        print(f"could not list the models of {args.url} ({exc}); is the server up? (or give --model)",
              file=sys.stderr)
        return 1
    settings = {name: {"model": model, "anchor": anchor, "max_tokens": args.max_tokens,
                       "num_frames": args.num_frames} for name, anchor in variants.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    answers = load_answers(out / "answers.jsonl")
    problems = check_settings(answers, settings)
    if problems:
        print("answers.jsonl in --out does not match this run (use another --out or variant name):\n"
              + "\n".join(problems), file=sys.stderr)
        return 2

    counts = asyncio.run(run(questions, variants, settings, answers, args, out / "answers.jsonl"))
    print(f"sent {counts['sent']}: {counts['answered']} answered, {counts['failed']} failed (HTTP 4xx), "
          f"{counts['unanswered']} unanswered; skipped {counts['skipped']} already in {out / 'answers.jsonl'}")
    config = {"url": args.url, "model": model, "questions": str(args.questions), "n_questions": len(questions),
              "max_tokens": args.max_tokens, "num_frames": args.num_frames, "parse": args.parse,
              "limit": args.limit, "prompt": "VSI-Bench lmms-eval default", "temperature": 0.0}
    results = report.build_results(questions, variants, answers, args.parse, config)
    report.write(results, out)
    print(report.table(results))
    print(f"wrote {out / 'results.json'} and {out / 'scores.png'}")
    if counts["unanswered"]:
        print(f"{counts['unanswered']} request(s) got no answer (first: {counts['first_error']}); "
              "run again with the same --out to send them", file=sys.stderr)
        return 1
    return 0
