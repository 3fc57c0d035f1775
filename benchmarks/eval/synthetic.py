"""A small synthetic spatial video QA set whose answers are known exactly: coloured shapes
on a plain background that appear one after another, rendered to short mp4 files.

    python -m benchmarks.eval.synthetic OUT_DIR [--per-type 2] [--seed 0] [--frames 8] [--size 112]

Writes OUT_DIR/videos/ID.mp4, OUT_DIR/questions.jsonl (the harness's question format) and
OUT_DIR/scenes.jsonl (every scene's objects and which of them each question is about). The
answers are computed from the scene specifications, never from the pixels; the tests
re-derive them from the decoded frames. Deterministic: one seed, the same bytes. It is a
smoke benchmark (does the pipeline run, does a model answer at all), not a measure of
spatial intelligence: a random-weight model scores near chance on it.

Question types (VSI-Bench's names where the question means the same):
  object_counting         numeric   how many shapes of one colour
  object_rel_direction    4 options is one shape left of, right of, above or below another
  obj_appearance_order    4 options the order in which three shapes first appear
  object_size_comparison  3 options which of three shapes is the largest (by area)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

# BGR, as OpenCV draws; far apart from each other and from the background
COLOURS = {"red": (40, 40, 220), "green": (40, 170, 40), "blue": (220, 90, 30), "yellow": (30, 210, 230),
           "magenta": (200, 40, 200)}
BACKGROUND = (235, 235, 235)
SHAPES = ("circle", "square", "triangle")
QUESTION_TYPES = ("object_counting", "object_rel_direction", "obj_appearance_order", "object_size_comparison")
DIRECTIONS = ("left", "right", "above", "below")
GAP = 0.06  # least free space between two shapes, as a fraction of the frame


class NoRoom(Exception):
    """A shape found no free spot: the scene is drawn again."""


@dataclass(frozen=True)
class Shape:
    """A shape in normalised coordinates (0-1, y down); `radius` is half its width."""

    colour: str
    shape: str
    x: float
    y: float
    radius: float
    appears: int  # the first frame that shows it

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def extent(self) -> float:
        """Radius of a circle around its centre that holds the shape."""
        return self.radius * (1.0 if self.shape == "circle" else math.sqrt(2))

    @property
    def area(self) -> float:
        side = 2 * self.radius
        return {"circle": math.pi * self.radius ** 2, "square": side ** 2,
                "triangle": side * side / 2}[self.shape]


def draw(shapes: list[Shape], frame_index: int, size: int) -> np.ndarray:
    frame = np.full((size, size, 3), BACKGROUND, np.uint8)
    for s in shapes:
        if s.appears > frame_index:
            continue
        cx, cy, r = s.x * size, s.y * size, s.radius * size
        colour = COLOURS[s.colour]
        if s.shape == "circle":
            cv2.circle(frame, (round(cx), round(cy)), round(r), colour, -1)
        elif s.shape == "square":
            cv2.rectangle(frame, (round(cx - r), round(cy - r)), (round(cx + r), round(cy + r)), colour, -1)
        else:  # isosceles, apex up, base 2r, height 2r
            points = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]]).round().astype(np.int32)
            cv2.fillPoly(frame, [points], colour)
    return frame


def write_video(shapes: list[Shape], path: Path, frames: int, size: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 2.0, (size, size))
    for t in range(frames):
        writer.write(draw(shapes, t, size))
    writer.release()


def _free(x: float, y: float, extent: float, placed: list[Shape]) -> bool:
    inside = extent + 0.02 <= x <= 1 - extent - 0.02 and extent + 0.02 <= y <= 1 - extent - 0.02
    return inside and all(math.hypot(x - p.x, y - p.y) >= extent + p.extent + GAP for p in placed)


def _place(rng, colour: str, shape: str, radius: float, appears: int, placed: list[Shape],
           near: tuple[float, float, str] | None = None) -> Shape:
    """A shape at a random free spot; with `near` = (x, y, direction), one that lies clearly
    in that direction from (x, y): at least 0.25 along it, at most 0.05 across."""
    for _ in range(200):
        if near is None:
            x, y = rng.uniform(0, 1, 2)
        else:
            along, across = rng.uniform(0.25, 0.6), rng.uniform(-0.05, 0.05)
            dx, dy = {"left": (-along, across), "right": (along, across), "above": (across, -along),
                      "below": (across, along)}[near[2]]
            x, y = near[0] + dx, near[1] + dy
        candidate = Shape(colour, shape, float(x), float(y), radius, appears)
        if _free(candidate.x, candidate.y, candidate.extent, placed):
            return candidate
    raise NoRoom()


def _radius(rng, low: float = 0.07, high: float = 0.11) -> float:
    return float(rng.uniform(low, high))


def _appearances(rng, n: int, frames: int, distinct: bool) -> list[int]:
    """First frames of n shapes, all before the last frame (which shows every shape);
    distinct ones are at least two frames apart."""
    if distinct:
        return sorted(int(v) for v in rng.choice(np.arange(0, frames - 1, 2), n, replace=False))
    return [int(v) for v in rng.integers(0, max(1, frames // 2), n)]


def _mc(rng, correct: str, others: list[str]) -> tuple[list[str], str]:
    options = [correct, *others]
    rng.shuffle(options)
    return options, "ABCD"[options.index(correct)]


def counting(rng, frames: int) -> tuple[list[Shape], list[str], dict]:
    colour, *others = rng.permutation(list(COLOURS))
    count, distractors = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    kinds = [colour] * count + [str(rng.choice(others)) for _ in range(distractors)]
    placed: list[Shape] = []
    for kind, appears in zip(kinds, _appearances(rng, len(kinds), frames, distinct=False)):
        placed.append(_place(rng, str(kind), str(rng.choice(SHAPES)), _radius(rng, 0.06, 0.09), appears, placed))
    return placed, [str(colour)], {"question": f"How many {colour} shapes are there in the video?", "answer": count}


def rel_direction(rng, frames: int) -> tuple[list[Shape], list[str], dict]:
    colours = [str(c) for c in rng.permutation(list(COLOURS))[:3]]
    first, second = (str(s) for s in rng.choice(SHAPES, 2, replace=False))
    direction = str(rng.choice(DIRECTIONS))
    appears = _appearances(rng, 3, frames, distinct=False)
    anchor = _place(rng, colours[0], first, _radius(rng), appears[0], [])
    target = _place(rng, colours[1], second, _radius(rng), appears[1], [anchor], near=(anchor.x, anchor.y, direction))
    distractor = _place(rng, colours[2], str(rng.choice(SHAPES)), _radius(rng), appears[2], [anchor, target])
    options, letter = _mc(rng, direction, [d for d in DIRECTIONS if d != direction])
    question = f"Is the {target.name} to the left of, to the right of, above or below the {anchor.name}?"
    return [anchor, target, distractor], [anchor.colour, target.colour], {
        "question": question, "options": options, "answer": letter}


def appearance_order(rng, frames: int) -> tuple[list[Shape], list[str], dict]:
    colours = [str(c) for c in rng.permutation(list(COLOURS))[:3]]
    shapes = [str(s) for s in rng.choice(SHAPES, 3)]
    order = rng.permutation(3)  # listed in the question in a random order
    appears = _appearances(rng, 3, frames, distinct=True)
    placed: list[Shape] = []
    for colour, shape, rank in zip(colours, shapes, order):
        placed.append(_place(rng, colour, shape, _radius(rng), appears[rank], placed))
    by_time = ", ".join(s.name for s in sorted(placed, key=lambda s: s.appears))
    wrong = [", ".join(placed[i].name for i in p) for p in itertools.permutations(range(3))]
    wrong = [w for w in wrong if w != by_time]
    others = [wrong[i] for i in rng.choice(len(wrong), 3, replace=False)]
    options, letter = _mc(rng, by_time, others)
    question = ("What will be the first-time appearance order of the following shapes in the video: "
                f"{', '.join(s.name for s in placed)}?")
    return placed, [s.colour for s in placed], {"question": question, "options": options, "answer": letter}


def size_comparison(rng, frames: int) -> tuple[list[Shape], list[str], dict]:
    colours = [str(c) for c in rng.permutation(list(COLOURS))[:3]]
    while True:  # areas at least 1.5x apart, so that the largest is plain to see
        shapes = [str(s) for s in rng.choice(SHAPES, 3)]
        radii = rng.uniform(0.05, 0.14, 3)
        areas = sorted(Shape("", k, 0, 0, float(r), 0).area for k, r in zip(shapes, radii))
        if areas[1] / areas[0] >= 1.5 and areas[2] / areas[1] >= 1.5:
            break
    appears = _appearances(rng, 3, frames, distinct=False)
    placed: list[Shape] = []
    for colour, shape, radius, t in zip(colours, shapes, radii, appears):
        placed.append(_place(rng, colour, shape, float(radius), t, placed))
    largest = max(placed, key=lambda s: s.area).name
    options, letter = _mc(rng, largest, [s.name for s in placed if s.name != largest])
    question = "Which of these shapes is the largest in the video?"
    return placed, [s.colour for s in placed], {"question": question, "options": options, "answer": letter}


def _scene(make, rng, frames: int):
    """A scene from `make`, drawn again (with the same generator, so still deterministic)
    while its shapes do not fit."""
    for _ in range(100):
        try:
            return make(rng, frames)
        except NoRoom:
            continue
    raise RuntimeError("the shapes do not fit into the frame")


GENERATORS = {"object_counting": counting, "object_rel_direction": rel_direction,
              "obj_appearance_order": appearance_order, "object_size_comparison": size_comparison}


def generate(out_dir: str | Path, per_type: int = 2, seed: int = 0, frames: int = 8, size: int = 112,
             types: tuple[str, ...] = QUESTION_TYPES) -> Path:
    """Writes the set; returns the path of questions.jsonl. Question i of a type depends only
    on (seed, type, i), so a larger --per-type keeps the smaller set's questions."""
    if frames < 6:
        raise ValueError("frames must be at least 6 (three shapes appear two frames apart)")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    questions, scenes = [], []
    for question_type in types:
        for i in range(per_type):
            rng = np.random.default_rng([seed, QUESTION_TYPES.index(question_type), i])
            shapes, subjects, qa = _scene(GENERATORS[question_type], rng, frames)
            qid = f"{question_type}-{i:03d}"
            write_video(shapes, out / "videos" / f"{qid}.mp4", frames, size)
            questions.append({"id": qid, "video": f"videos/{qid}.mp4", "question_type": question_type, **qa})
            scenes.append({"id": qid, "subjects": subjects, "shapes": [asdict(s) for s in shapes]})
    (out / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (out / "scenes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scenes))
    return out / "questions.jsonl"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--per-type", type=int, default=2, help="questions per question type")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112, help="frame width and height in pixels")
    parser.add_argument("--types", nargs="+", default=list(QUESTION_TYPES), choices=QUESTION_TYPES)
    args = parser.parse_args(argv)
    path = generate(args.out_dir, args.per_type, args.seed, args.frames, args.size, tuple(args.types))
    print(f"wrote {args.per_type * len(args.types)} questions to {path}")


if __name__ == "__main__":
    main()
