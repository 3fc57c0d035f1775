"""benchmarks/eval scoring against hand-computed values, answer extraction, question-file
validation, and the report's aggregation (VSI-Bench's overall)."""

import json

import pytest

from benchmarks.eval.questions import QuestionFileError, load_questions
from benchmarks.eval.report import build_results, table
from benchmarks.eval.scoring import extract_choice, extract_number, mean_relative_accuracy, score_answer


@pytest.mark.parametrize("pred, truth, expected", [
    # thresholds t = 0.50, 0.55, ..., 0.95; a threshold passes when |pred - truth| / truth <= 1 - t
    (10, 10, 1.0),     # exact: all ten
    (9, 10, 0.9),      # error 0.1: t = 0.50 ... 0.90 (nine)
    (11, 10, 0.9),
    (7, 10, 0.5),      # error 0.3: t = 0.50 ... 0.70
    (6, 10, 0.3),      # error 0.4: t = 0.50 ... 0.60
    (3, 4, 0.6),       # error 0.25: t = 0.50 ... 0.75
    (15, 10, 0.1),     # error 0.5: only t = 0.50
    (5, 10, 0.1),
    (16, 10, 0.0),     # error 0.6: none
    (0, 10, 0.0),      # zero
    (-10, 10, 0.0),    # negative
    (1000, 10, 0.0),   # far off
    (2.6, 2.5, 1.0),   # error 0.04: all ten
    # where float64 decides, as in VSI-Bench's code: 1 - 0.8 is 0.19999999999999996 < 0.2 and
    # 1 - 0.55 is 0.44999999999999996 < 0.45, so these exact boundaries fail
    (8, 10, 0.6),      # error 0.2: t = 0.50 ... 0.75 (not 0.80)
    (12, 10, 0.6),
    (29, 20, 0.1),     # error 0.45: only t = 0.50 (not 0.55)
])
def test_mean_relative_accuracy(pred, truth, expected):
    assert mean_relative_accuracy(pred, truth) == pytest.approx(expected)


def test_mean_relative_accuracy_counts_thresholds_by_hand():
    """Error 0.12: 1 - t >= 0.12 for t in 0.50, 0.55, ..., 0.85 (8 of 10)."""
    assert mean_relative_accuracy(8.8, 10) == pytest.approx(0.8)
    assert mean_relative_accuracy(12.4, 10) == pytest.approx(0.6)  # error 0.24: t <= 0.75: 6 of 10


@pytest.mark.parametrize("text, vsibench, lenient", [
    ("B", "B", "B"),
    ("b", "B", "B"),
    ("B.", "B", "B"),
    ("B. left", "B", "B"),
    ("(B) left", None, "B"),
    ("B)", None, "B"),
    ("The answer is B", None, "B"),
    ("Answer: C", None, "C"),
    ("E", None, None),        # not one of the four options
    ("left", None, None),
    ("", None, None),
    ("B\nleft", None, "B"),   # VSI-Bench splits on spaces only
])
def test_extract_choice(text, vsibench, lenient):
    assert extract_choice(text, 4, "vsibench") == vsibench
    assert extract_choice(text, 4, "lenient") == lenient


@pytest.mark.parametrize("text, vsibench, lenient", [
    ("3", 3.0, 3.0),
    ("3.5", 3.5, 3.5),
    ("3.", 3.0, 3.0),
    ("3 chairs", 3.0, 3.0),
    ("-2", -2.0, -2.0),
    ("three", None, 3.0),
    ("about 4 meters", None, 4.0),
    ("3m", None, 3.0),
    ("none", None, None),
    ("", None, None),
])
def test_extract_number(text, vsibench, lenient):
    assert extract_number(text, "vsibench") == vsibench
    assert extract_number(text, "lenient") == lenient


def test_score_answer():
    options = ["left", "right", "above", "below"]
    assert score_answer("B.", options, "B") == ("B", 1.0)
    assert score_answer("C", options, "B") == ("C", 0.0)
    assert score_answer("(B)", options, "B") == (None, 0.0)
    assert score_answer("(B)", options, "B", "lenient") == ("B", 1.0)
    assert score_answer("9", None, 10.0) == (9.0, pytest.approx(0.9))
    assert score_answer("nine", None, 10.0) == (None, 0.0)  # unparsable: 0
    assert score_answer("nine", None, 10.0, "lenient") == (9.0, pytest.approx(0.9))
    assert score_answer(None, options, "B") == (None, 0.0)  # the request failed: 0


def write_lines(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


@pytest.fixture
def video(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"not decoded here")
    return "videos/a.mp4"


def test_questions_load_both_shapes(tmp_path, video):
    root = tmp_path / "vsi"
    (root / "scannet").mkdir(parents=True)
    (root / "scannet" / "scene0001_00.mp4").write_bytes(b"x")
    path = write_lines(tmp_path / "q.jsonl", [
        {"id": 1, "video": video, "question": "Where?", "question_type": "dir", "options": ["left", "right"],
         "answer": "b"},
        {"id": "n", "video": "https://example.com/v.mp4", "question": "How many?", "question_type": "count",
         "ground_truth": "3"},
        {"id": 7, "dataset": "scannet", "scene_name": "scene0001_00", "question_type": "object_rel_distance",
         "question": "Which is closer?", "options": ["A. chair", "B. table"], "ground_truth": "A",
         "extra_field": "ignored"},
    ])
    mc, numeric, vsi = load_questions(path, video_root=root)
    assert (mc.id, mc.answer, mc.video) == ("1", "B", str(tmp_path / "videos" / "a.mp4"))
    assert mc.prompt() == ("These are frames of a video.\nWhere?\nOptions:\nA. left\nB. right\n"
                           "Answer with the option's letter from the given choices directly.")
    assert (numeric.answer, numeric.options) == (3.0, None)
    assert numeric.prompt() == ("These are frames of a video.\nHow many?\n"
                                "Please answer the question using a single word or phrase.")
    assert vsi.video == str(root / "scannet" / "scene0001_00.mp4") and vsi.id == "7"
    assert "Options:\nA. chair\nB. table\n" in vsi.prompt()  # already lettered: shown as given


def test_question_file_errors_name_line_and_field(tmp_path, video):
    good = {"id": "ok", "video": video, "question": "How many?", "question_type": "count", "answer": 2}
    path = write_lines(tmp_path / "q.jsonl", [
        good,
        "{not json",
        {**good, "id": "a", "answer": 0},
        {**good, "id": "b", "options": ["x", "y", "z"], "answer": "D"},
        {**good, "id": "c", "answer": "many"},
        {**good, "id": "d", "video": "videos/missing.mp4"},
        {**good, "id": "e", "answr": 3},
        {**good, "id": "ok"},
        {"id": "f", "dataset": "scannet", "scene_name": "s", "question_type": "t", "question": "q",
         "ground_truth": "1"},
        {k: v for k, v in good.items() if k != "question"} | {"id": "g"},
    ])
    with pytest.raises(QuestionFileError) as error:
        load_questions(path)
    problems = error.value.problems
    expected = [
        "q.jsonl:2: not valid JSON",
        "q.jsonl:3: answer: must be a positive number",
        "q.jsonl:4: answer: must be one of the option letters A-C, got 'D'",
        "q.jsonl:5: answer: a question without options needs a numeric answer",
        "q.jsonl:6: video: no such file: " + str(tmp_path / "videos" / "missing.mp4"),
        "q.jsonl:7: answr: Extra inputs are not permitted",
        "q.jsonl:8: id: 'ok' already used on line 1",
        "q.jsonl:9: video: a VSI-Bench row needs --video-root",
        "q.jsonl:10: question: Field required",
    ]
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), (problem, start)


def answer(response, status=200, header="off"):
    return {"response": response, "status": status, "error": None if status == 200 else "bad",
            "headers": {"x-videoanchor-anchor": header} if header else {}}


def test_report_uses_vsibench_aggregation(tmp_path, video):
    rows = [{"id": f"{level}{i}", "video": video, "question": "q", "question_type": f"object_rel_direction_{level}",
             "options": ["l", "r"], "answer": "A"} for level in ("easy", "hard") for i in range(2)]
    rows += [{"id": f"c{i}", "video": video, "question": "q", "question_type": "object_counting", "answer": 10}
             for i in range(3)]
    questions = load_questions(write_lines(tmp_path / "q.jsonl", rows))
    answers = {}
    for q in questions:  # off: easy 2/2, hard 0/2, counting 9 9 10 -> 0.9 0.9 1.0
        answers[q.id, "off"] = answer(
            {"easy0": "A", "easy1": "A", "hard0": "B", "hard1": "B"}.get(q.id, "10" if q.id == "c2" else "9"))
    for q in questions:  # on: every direction right, counting off by 10 %... except one refused
        answers[q.id, "on"] = answer("A" if q.options else "11", header="applied")
    answers["c0", "on"] = answer(None, status=400, header=None)
    del answers["c1", "on"]  # never answered: left out of "on"'s means
    results = build_results(questions, {"off": False, "on": True}, answers, "vsibench", {})

    assert results["per_type"]["object_rel_direction_easy"]["off"] == 1.0
    assert results["per_type"]["object_rel_direction_hard"]["off"] == 0.0
    assert results["per_category"]["object_rel_direction"] == {"n": 4, "off": 0.5, "on": 1.0}
    assert results["per_category"]["object_counting"]["off"] == pytest.approx((0.9 + 0.9 + 1.0) / 3)
    assert results["per_category"]["object_counting"]["on"] == pytest.approx((0.0 + 0.9) / 2)
    # overall: the mean of the two categories, not of the 7 questions
    assert results["overall"]["off"] == pytest.approx((0.5 + 2.8 / 3) / 2)
    assert results["overall"]["on"] == pytest.approx((1.0 + 0.45) / 2)
    assert results["gain_points"]["on"]["object_rel_direction"] == pytest.approx(50.0)
    assert results["gain_points"]["on"]["overall"] == pytest.approx(100 * ((1.0 + 0.45) / 2 - (0.5 + 2.8 / 3) / 2))
    assert results["counts"]["on"] == {"answered": 5, "failed": 1, "missing": 1, "anchor_header": {
        "applied": 5, "absent": 1}}
    text = table(results)
    assert "| object_rel_direction | 4 | 50.0 | 100.0 | +50.0 |" in text
    assert "| overall | 7 | 71.7 | 72.5 | +0.8 |" in text
    assert "on: 5 answered, 1 failed (HTTP 4xx, scored 0), 1 missing; x-videoanchor-anchor: absent=1, applied=5" \
        in text
