"""Scores per question type and overall, per variant, with each variant's gain over the
baseline (the first variant): as a text table, results.json and a bar chart.

Aggregation is VSI-Bench's (`vsibench_aggregate_results`): the mean score per question
type; VSI-Bench's three relative-direction levels (object_rel_direction_easy, _medium,
_hard) are then averaged into one category, object_rel_direction; overall is the mean over
categories, not over questions. Every other question type is its own category.
A request refused as bad (HTTP 400, 413, 422) counts as an answer that scored 0 (VSI-Bench's
worst case); a question with no recorded answer for a variant is left out of that variant's
means and counted as missing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .questions import Question
from .scoring import ParseMode, score_answer

CATEGORY_OF = {f"object_rel_direction_{level}": "object_rel_direction" for level in ("easy", "medium", "hard")}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_results(questions: list[Question], variants: dict, answers: dict[tuple[str, str], dict],
                  parse: ParseMode, config: dict) -> dict:
    """The whole report as one JSON-able dict. `answers` maps (question id, variant) to the
    recorded answer (see runner.py)."""
    names = list(variants)
    per_question, scores = [], {name: {} for name in names}  # variant -> type -> [score]
    counts = {name: {"answered": 0, "failed": 0, "missing": 0, "anchor_header": Counter()} for name in names}
    for q in questions:
        row = {"id": q.id, "question_type": q.question_type, "truth": q.answer, "variants": {}}
        for name in names:
            answer = answers.get((q.id, name))
            if answer is None:
                counts[name]["missing"] += 1
                continue
            parsed, score = score_answer(answer["response"], q.options, q.answer, parse)
            counts[name]["answered" if answer["response"] is not None else "failed"] += 1
            header = answer["headers"].get("x-videoanchor-anchor", "absent")
            counts[name]["anchor_header"][header] += 1
            scores[name].setdefault(q.question_type, []).append(score)
            row["variants"][name] = {"response": answer["response"], "parsed": parsed, "score": score,
                                     "status": answer["status"], "error": answer["error"], "anchor_header": header}
        per_question.append(row)

    types = sorted({q.question_type for q in questions})
    categories = sorted({CATEGORY_OF.get(t, t) for t in types})
    per_type = {t: {"n": sum(q.question_type == t for q in questions),
                    **{name: _mean(scores[name].get(t, [])) for name in names}} for t in types}
    per_category = {}
    for category in categories:
        members = [t for t in types if CATEGORY_OF.get(t, t) == category]
        per_category[category] = {"n": sum(per_type[t]["n"] for t in members), **{
            name: _mean([per_type[t][name] for t in members if per_type[t][name] is not None]) for name in names}}
    overall = {name: _mean([c[name] for c in per_category.values() if c[name] is not None]) for name in names}
    baseline = names[0]
    gains = {name: {key: _points(row[name], row[baseline])
                    for key, row in [*per_category.items(), ("overall", overall)]} for name in names[1:]}
    return {"config": config, "baseline": baseline, "variants": variants, "per_category": per_category,
            "per_type": per_type, "overall": overall, "gain_points": gains,
            "counts": {name: {**c, "anchor_header": dict(c["anchor_header"])} for name, c in counts.items()},
            "questions": per_question}


def _points(score: float | None, baseline: float | None) -> float | None:
    return None if score is None or baseline is None else 100 * (score - baseline)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def table(results: dict) -> str:
    """Markdown table: a row per category and overall, scores in %, gains in points."""
    names, baseline = list(results["variants"]), results["baseline"]
    header = ["category", "n", *names, *(f"{n} vs {baseline}" for n in names[1:])]
    rows = [[category, str(row["n"]), *(_pct(row[n]) for n in names),
             *(_signed(results["gain_points"][n][category]) for n in names[1:])]
            for category, row in results["per_category"].items()]
    n_questions = sum(row["n"] for row in results["per_category"].values())
    rows.append(["overall", str(n_questions), *(_pct(results["overall"][n]) for n in names),
                 *(_signed(results["gain_points"][n]["overall"]) for n in names[1:])])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for name, c in results["counts"].items():
        headers = ", ".join(f"{k}={v}" for k, v in sorted(c["anchor_header"].items()))
        lines.append(f"{name}: {c['answered']} answered, {c['failed']} failed (HTTP 4xx, scored 0), "
                     f"{c['missing']} missing; x-videoanchor-anchor: {headers or '-'}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Grouped bars: one group per category and overall, one bar per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["variants"])
    groups = [*results["per_category"], "overall"]
    values = {n: [results["per_category"][g][n] if g != "overall" else results["overall"][n] for g in groups]
              for n in names}
    width = 0.8 / len(names)
    fig, axis = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(names) / 2)), 4.2))
    for i, name in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        bars = axis.bar(xs, [100 * (v or 0.0) for v in values[name]], width, label=name)
        axis.bar_label(bars, ["-" if v is None else f"{100 * v:.0f}" for v in values[name]], fontsize=6)
    axis.set_xticks(range(len(groups)), [g.replace("_", "\n", 1) for g in groups], fontsize=8)
    axis.set(ylabel="score (%)", ylim=(0, 100), title=f"scores per category (baseline: {results['baseline']})")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "scores.png")
