"""A small local dataset in VSI-Bench's format, for lmms-eval's `vsibench` task, offline.

    python -m benchmarks.eval.lmms_vsibench OUT --lmms-python .venv/lmms-eval/bin/python [--per-type 2]

lmms-eval reads VSI-Bench from the Hugging Face hub (nyu-visionx/VSI-Bench) and its videos
from `$HF_HOME/vsibench/{dataset}/{scene_name}.mp4`. This writes, from the synthetic spatial
set of `benchmarks.eval.synthetic` (answers known by construction):

  OUT/hf_home/vsibench/synthetic/ID.mp4   the videos, where the task looks for them
  OUT/tasks/test.jsonl                    rows in VSI-Bench's columns (id, dataset,
                                          scene_name, question_type, question, options,
                                          ground_truth)
  OUT/tasks/vsibench_local.yaml           the task `vsibench_local`: lmms-eval's own vsibench
                                          template (prompts, scoring, metrics) on that file,
                                          through lmms-eval's local `json` builder

Then, with a server that may read OUT/hf_home/vsibench (`--allowed-local-media-path`):

    HF_HOME=OUT/hf_home HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OPENAI_API_KEY=... \\
    .venv/lmms-eval/bin/python -m lmms_eval --model openai --model_args \\
        model=MODEL,base_url=http://localhost:8000/v1,pass_video_url=True,max_frames_num=8 \\
        --tasks vsibench_local --include_path OUT/tasks --output_path OUT/results --log_samples

Question types kept: object_counting (numeric, scored by VSI-Bench's mean relative
accuracy) and obj_appearance_order (multiple choice), `per_type` of each; and 3 x `per_type`
object_rel_direction questions (multiple choice), labelled in turn with VSI-Bench's
object_rel_direction_easy, _medium and _hard (lmms-eval's aggregate needs all three; here the
labels say nothing about difficulty: the synthetic questions are of one kind). The synthetic
set's size comparison has no VSI-Bench type of the same meaning and is left out. A smoke set:
a random-weight model scores near chance on it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from .synthetic import generate

DATASET = "synthetic"  # the rows' `dataset` column: the videos' folder under $HF_HOME/vsibench
TYPES = ("object_counting", "object_rel_direction", "obj_appearance_order")  # the synthetic set's names
DIRECTION_LEVELS = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard")
TASK = "vsibench_local"


def vsibench_template(lmms_python: str) -> Path:
    """lmms-eval's vsibench template, in the environment of `lmms_python` (found without
    importing lmms-eval)."""
    code = ("import importlib.util, pathlib; "
            "print(pathlib.Path(importlib.util.find_spec('lmms_eval').origin).parent)")
    root = subprocess.run([lmms_python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    template = Path(root) / "tasks" / "vsibench" / "_default_template_yaml"
    if not template.is_file():
        raise FileNotFoundError(f"{template}: this lmms-eval has no vsibench task")
    return template


def vsibench_row(question: dict, question_type: str) -> dict:
    """A synthetic question as a VSI-Bench row (options as "A. ...", as VSI-Bench writes them)."""
    row = {"id": question["id"], "dataset": DATASET, "scene_name": question["id"],
           "question_type": question_type, "question": question["question"]}
    if "options" in question:
        row["options"] = [f"{letter}. {option}" for letter, option in zip("ABCD", question["options"])]
        row["ground_truth"] = question["answer"]
    else:
        row["options"] = []
        row["ground_truth"] = str(question["answer"])
    return row


def write(out: str | Path, template: str | Path, per_type: int = 2, seed: int = 0, frames: int = 8,
          size: int = 112) -> dict[str, Path]:
    """Writes the dataset and the task (module docstring); returns {"hf_home", "videos",
    "tasks", "rows"}."""
    out = Path(out)
    synthetic = generate(out / "synthetic", per_type=3 * per_type, seed=seed, frames=frames, size=size,
                         types=TYPES)
    videos = out / "hf_home" / "vsibench" / DATASET
    tasks = out / "tasks"
    videos.mkdir(parents=True, exist_ok=True)
    tasks.mkdir(parents=True, exist_ok=True)
    rows, taken = [], dict.fromkeys(TYPES, 0)
    for line in synthetic.read_text().splitlines():
        question = json.loads(line)
        kind, index = question["question_type"], taken[question["question_type"]]
        if kind != "object_rel_direction" and index >= per_type:
            continue
        taken[kind] += 1
        shutil.copyfile(synthetic.parent / question["video"], videos / f"{question['id']}.mp4")
        rows.append(vsibench_row(question, DIRECTION_LEVELS[index % 3] if kind == "object_rel_direction" else kind))
    (tasks / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tasks / f"{TASK}.yaml").write_text(
        f"# lmms-eval's vsibench template on the local rows of test.jsonl (benchmarks/eval/lmms_vsibench.py)\n"
        f"include: {Path(template).resolve()}\n"
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        "    test: test.jsonl\n"
        "test_split: test\n")
    return {"hf_home": out / "hf_home", "videos": videos.parent, "tasks": tasks, "rows": tasks / "test.jsonl"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--lmms-python", required=True, help="the python of lmms-eval's environment (make lmms-eval: "
                        ".venv/lmms-eval/bin/python)")
    parser.add_argument("--per-type", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args(argv)
    paths = write(args.out, vsibench_template(args.lmms_python), args.per_type, args.seed, args.frames, args.size)
    print(json.dumps({name: str(path) for name, path in paths.items()}))


if __name__ == "__main__":
    main()
