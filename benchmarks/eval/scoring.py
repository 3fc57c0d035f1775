"""Answer extraction and scoring, as VSI-Bench scores them, so that numbers are comparable
with published ones.

The reference is VSI-Bench's lmms-eval task (`lmms_eval/tasks/vsibench/utils.py` in
vision-x-nyu/thinking-in-space and in EvolvingLMMs-Lab/lmms-eval):

- extraction: the text up to the first space, trailing dots removed
  (`pred.split(' ')[0].rstrip('.').strip()`);
- multiple choice: that token equals the option letter, case-insensitive (1 or 0);
- numeric: `float()` of that token, scored by mean relative accuracy (MRA) over the
  thresholds `np.linspace(.5, .95, 10)`: the share of thresholds t with
  |pred - gt| / gt <= 1 - t. Unparsable answers score 0.

MRA is computed with the reference's own float64 arithmetic: exact boundary cases then fall
as they fall there (9 vs 10 passes t = 0.90, as `<=` would; 8 vs 10 fails t = 0.80, as `<`
would), which is what the published numbers contain.

`lenient` parsing is ours, for finding out how many answers were right but phrased
otherwise: multiple choice takes a leading option letter ("(B) left", "B)") or the one after
"answer is" / "answer:"; numeric takes the first number in the text, else a number word
("three"). Its scores are not comparable with published VSI-Bench numbers.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np

ParseMode = Literal["vsibench", "lenient"]
PARSE_MODES: tuple[ParseMode, ...] = ("vsibench", "lenient")

# the reference builds them as np.linspace(start, end, int((end - start) / interval + 2))
THRESHOLDS = np.linspace(0.5, 0.95, 10)

NUMBER_WORDS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def mean_relative_accuracy(pred: float, truth: float) -> float:
    """VSI-Bench's MRA of one numeric answer, in [0, 1]; `truth` must be positive."""
    return float(np.mean(abs(pred - truth) / truth <= 1 - THRESHOLDS))


def first_token(text: str) -> str:
    """VSI-Bench's `fuzzy_matching`: up to the first space, trailing dots dropped."""
    return text.split(" ")[0].rstrip(".").strip()


def extract_choice(text: str, n_options: int, mode: ParseMode = "vsibench") -> str | None:
    """The option letter an answer names (upper case), or None."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n_options]
    if mode == "vsibench":
        token = first_token(text).upper()
        return token if len(token) == 1 and token in letters else None
    match = (re.match(r"\W*([A-Za-z])(?![A-Za-z])", text)
             or re.search(r"answer\W*(?:is\W*)?([A-Za-z])(?![A-Za-z])", text, re.IGNORECASE))
    letter = match.group(1).upper() if match else None
    return letter if letter and letter in letters else None


def extract_number(text: str, mode: ParseMode = "vsibench") -> float | None:
    """The number an answer gives, or None."""
    if mode == "vsibench":
        try:
            return float(first_token(text))
        except ValueError:
            return None
    match = re.search(r"-?\d+(?:\.\d+)?", text)
    if match:
        return float(match.group())
    word = re.search(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", text, re.IGNORECASE)
    return float(NUMBER_WORDS[word.group(1).lower()]) if word else None


def score_answer(text: str | None, options: list[str] | None, truth: str | float,
                 mode: ParseMode = "vsibench") -> tuple[str | float | None, float]:
    """(what was parsed from the answer, its score in [0, 1]). `text` None (no answer: the
    request failed) scores 0, as VSI-Bench's worst case."""
    if text is None:
        return None, 0.0
    if options is not None:
        letter = extract_choice(text, len(options), mode)
        return letter, float(letter is not None and letter == str(truth).upper())
    number = extract_number(text, mode)
    return number, (mean_relative_accuracy(number, float(truth)) if number is not None else 0.0)
