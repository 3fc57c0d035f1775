"""Question files: JSON lines, one question per line, checked before anything is sent, with
errors that name the line and the field.

Two row shapes are accepted, in one file or mixed:

- ours: {"id", "video", "question", "question_type", "options" (list, multiple choice) or
  none, "answer" (or "ground_truth"): the option letter for multiple choice, a positive
  number for numeric questions}. `video` is a local path (relative to the question file, or
  absolute), an http(s) URL or a data URL.
- VSI-Bench's own rows (nyu-visionx/VSI-Bench test split): {"id", "dataset", "scene_name",
  "question_type", "question", "options", "ground_truth", ...}; the video is
  `{video_root}/{dataset}/{scene_name}.mp4`. Other fields are ignored.

Prompts are VSI-Bench's lmms-eval defaults, word for word, so that scores compare.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import re
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

PRE_PROMPT = "These are frames of a video."
MC_POST_PROMPT = "Answer with the option's letter from the given choices directly."
NUMERIC_POST_PROMPT = "Please answer the question using a single word or phrase."
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class QuestionFileError(ValueError):
    """Every problem found in a question file, one `file:line: field: message` per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class Question(BaseModel):
    """One question, validated: multiple choice iff `options` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    video: str
    question: str = Field(min_length=1)
    question_type: str = Field(min_length=1)
    options: list[str] | None = Field(default=None, min_length=2, max_length=len(LETTERS))
    answer: str | float = Field(validation_alias=AliasChoices("answer", "ground_truth"))

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("answer", mode="after")
    @classmethod
    def _answer_fits(cls, value, info):
        options = info.data.get("options")
        if "options" not in info.data:
            return value  # options themselves were invalid: that error is reported
        if options is not None:
            letter = str(value).strip().upper()
            if len(letter) != 1 or letter not in LETTERS[:len(options)]:
                raise ValueError(f"must be one of the option letters {LETTERS[0]}-{LETTERS[len(options) - 1]}, "
                                 f"got {value!r}")
            return letter
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"a question without options needs a numeric answer, got {value!r}") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"must be a positive number (mean relative accuracy divides by it), got {value!r}")
        return number

    def prompt(self) -> str:
        """VSI-Bench's prompt. Options are shown as given when they already start with their
        letter ("A. chair", as in VSI-Bench), otherwise with "A. " put in front."""
        if self.options is None:
            return "\n".join([PRE_PROMPT, self.question, NUMERIC_POST_PROMPT])
        lettered = all(re.match(rf"{letter}[.)]\s", option) for letter, option in zip(LETTERS, self.options))
        options = self.options if lettered else [f"{letter}. {o}" for letter, o in zip(LETTERS, self.options)]
        return "\n".join([PRE_PROMPT, self.question, "Options:\n" + "\n".join(options), MC_POST_PROMPT])


class VsiBenchRow(BaseModel):
    """A row of VSI-Bench's own test split."""

    model_config = ConfigDict(extra="ignore")

    id: int | str
    dataset: str
    scene_name: str
    question_type: str
    question: str
    options: list[str] | None = None
    ground_truth: str | float


def video_url(video: str, as_file_url: bool = False) -> str:
    """What goes into the request's `video_url`: URLs as they are; a local file as a base64
    data URL (no server flag needed), or as a file:// URL when asked (the server then needs
    `--allowed-local-media-path`, but no video crosses the network)."""
    if re.match(r"(https?|data|file):", video):
        return video
    path = Path(video)
    if as_file_url:
        return path.resolve().as_uri()
    mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _parse_row(row: dict, base: Path, video_root: Path | None, where: str) -> Question:
    if "video" not in row and "dataset" in row and "scene_name" in row:
        vsi = VsiBenchRow.model_validate(row)
        if video_root is None:
            raise QuestionFileError([f"{where}: video: a VSI-Bench row needs --video-root "
                                     "(its video is {video-root}/{dataset}/{scene_name}.mp4)"])
        row = {"id": vsi.id, "video": str(video_root / vsi.dataset / f"{vsi.scene_name}.mp4"),
               "question": vsi.question, "question_type": vsi.question_type, "options": vsi.options or None,
               "answer": vsi.ground_truth}
    question = Question.model_validate(row)
    if re.match(r"(https?|data|file):", question.video):
        return question
    path = Path(question.video).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise QuestionFileError([f"{where}: video: no such file: {path}"])
    return question.model_copy(update={"video": str(path)})


def load_questions(path: str | Path, video_root: str | Path | None = None) -> list[Question]:
    """All questions of a JSON-lines file, or QuestionFileError listing every bad line."""
    path = Path(path)
    root = Path(video_root).expanduser() if video_root is not None else None
    questions: list[Question] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise QuestionFileError([f"{where}: a line must be a JSON object"])
            question = _parse_row(row, path.parent, root, where)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON: {exc.msg}")
            continue
        except ValidationError as exc:
            problems += [f"{where}: {'.'.join(map(str, e['loc'])) or 'row'}: {e['msg'].removeprefix('Value error, ')}"
                         for e in exc.errors()]
            continue
        except QuestionFileError as exc:
            problems += exc.problems
            continue
        if question.id in first_line:
            problems.append(f"{where}: id: {question.id!r} already used on line {first_line[question.id]}")
            continue
        first_line[question.id] = number
        questions.append(question)
    if not questions and not problems:
        problems.append(f"{path.name}: no questions")
    if problems:
        raise QuestionFileError(problems)
    return questions
