"""The synthetic spatial QA set: deterministic, decodable videos of the asked-for shape, and
answers that agree with what the decoded pixels show (re-derived here from colour blobs,
independently of the scene specifications the generator computed them from)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.eval.questions import load_questions
from benchmarks.eval.synthetic import COLOURS, QUESTION_TYPES, generate

ROOT = Path(__file__).resolve().parents[2]
MIN_AREA = 15  # pixels: a shape is at least ~100, compression fringes are a few


def decode(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def blobs(frame: np.ndarray, colour: str) -> list[tuple[float, float, int]]:
    """(x, y, area) of each connected region close to `colour`."""
    distance = np.linalg.norm(frame.astype(float) - np.array(COLOURS[colour], float), axis=2)
    mask = (distance < 60).astype(np.uint8)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    return [(float(centroids[i][0]), float(centroids[i][1]), int(stats[i, cv2.CC_STAT_AREA]))
            for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= MIN_AREA]


def letter_of(options: list[str], text: str) -> str:
    return "ABCD"[options.index(text)]


def answer_from_pixels(question: dict, subjects: list[str], frames: list[np.ndarray]):
    """What the video shows, as the question's answer (a count or an option letter)."""
    last, kind, options = frames[-1], question["question_type"], question.get("options")
    if kind == "object_counting":
        return len(blobs(last, subjects[0]))
    if kind == "object_rel_direction":
        (ax, ay, _), = blobs(last, subjects[0])
        (tx, ty, _), = blobs(last, subjects[1])
        dx, dy = tx - ax, ty - ay
        direction = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("below" if dy > 0 else "above")
        return letter_of(options, direction)
    if kind == "obj_appearance_order":
        first_seen = {c: next(t for t, f in enumerate(frames) if blobs(f, c)) for c in subjects}
        assert len(set(first_seen.values())) == len(subjects)  # no ties
        order = sorted(subjects, key=first_seen.get)
        return next(letter_of(options, o) for o in options if [p.split()[0] for p in o.split(", ")] == order)
    if kind == "object_size_comparison":
        areas = {c: blobs(last, c)[0][2] for c in subjects}
        largest = max(areas, key=areas.get)
        return next(letter_of(options, o) for o in options if o.startswith(largest + " "))
    raise AssertionError(kind)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, per_type=6, seed=0)
    return out


def test_answers_agree_with_the_pixels(synthetic_set):
    questions = read_jsonl(synthetic_set / "questions.jsonl")
    scenes = {s["id"]: s for s in read_jsonl(synthetic_set / "scenes.jsonl")}
    assert [q["question_type"] for q in questions] == [t for t in QUESTION_TYPES for _ in range(6)]
    for question in questions:
        frames = decode(synthetic_set / question["video"])
        derived = answer_from_pixels(question, scenes[question["id"]]["subjects"], frames)
        assert derived == question["answer"], (question, derived)
    counts = [q["answer"] for q in questions if q["question_type"] == "object_counting"]
    assert len(set(counts)) > 1  # not one constant answer
    assert len({q["answer"] for q in questions if q.get("options")}) > 1


def test_videos_decode_with_the_requested_frames_and_size(synthetic_set, tmp_path):
    for path in (synthetic_set / "videos").glob("*.mp4"):
        frames = decode(path)
        assert len(frames) == 8 and all(f.shape == (112, 112, 3) for f in frames)
    subprocess.run([sys.executable, "-m", "benchmarks.eval.synthetic", str(tmp_path), "--per-type", "1",
                    "--frames", "10", "--size", "160", "--types", "obj_appearance_order"], cwd=ROOT, check=True)
    (question,) = read_jsonl(tmp_path / "questions.jsonl")
    frames = decode(tmp_path / question["video"])
    assert len(frames) == 10 and frames[0].shape == (160, 160, 3)


def test_the_set_is_deterministic_and_loads(synthetic_set, tmp_path):
    generate(tmp_path / "again", per_type=6, seed=0)
    generate(tmp_path / "other", per_type=6, seed=1)
    for name in ("questions.jsonl", "scenes.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (synthetic_set / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (synthetic_set / name).read_bytes()
    for path in (synthetic_set / "videos").glob("*.mp4"):
        assert (tmp_path / "again" / "videos" / path.name).read_bytes() == path.read_bytes()
    questions = load_questions(synthetic_set / "questions.jsonl")  # valid in the harness's format
    assert len(questions) == 24 and all(Path(q.video).is_file() for q in questions)
    # a larger set keeps the smaller one's questions
    generate(tmp_path / "larger", per_type=7, seed=0)
    larger = {q["id"]: q for q in read_jsonl(tmp_path / "larger" / "questions.jsonl")}
    assert all(larger[q["id"]] == q for q in read_jsonl(synthetic_set / "questions.jsonl"))
