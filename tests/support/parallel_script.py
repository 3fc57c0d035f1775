"""Parallel layouts of vLLM's CPU engine on the tiny model, for tests/engine/test_engine_parallel.py.

    python tests/support/parallel_script.py tensor MODEL_DIR TP   # a plain and an anchored video
                                                                   # request on TP ranks: RESULTS <json>
    python tests/support/parallel_script.py pipeline MODEL_DIR    # the same two requests on 2
                                                                   # pipeline stages: RESULTS <json>
"""

import json
import sys

# (vLLM's worker processes may import this module again: imports stay in the functions)


def plain_and_anchored(model: str, tp: int = 1, pp: int = 1) -> None:
    from engine_script import PROMPT, summary, video_item
    from vllm import LLM, SamplingParams

    from vllm_videoanchor.testing import model_spec

    llm = LLM(model=model, max_model_len=1024, enforce_eager=True, tensor_parallel_size=tp, pipeline_parallel_size=pp,
              dtype="float32", distributed_executor_backend="mp" if tp * pp > 1 else None,
              limit_mm_per_prompt={"video": 1})
    params = SamplingParams(max_tokens=4, temperature=0.0, logprobs=3, prompt_logprobs=1)
    prompt = {"prompt": PROMPT.format(media=model_spec(model).video_placeholder),
              "multi_modal_data": {"video": video_item()}}
    outputs = llm.generate([prompt, dict(prompt, mm_processor_kwargs={"anchor": {"n_clusters": 4}})], params)
    print("RESULTS " + json.dumps([summary(o) for o in outputs]))


if __name__ == "__main__":
    mode, model, *rest = sys.argv[1:]
    if mode == "tensor":
        plain_and_anchored(model, tp=int(rest[0]))
    elif mode == "pipeline":
        plain_and_anchored(model, pp=2)
    else:
        sys.exit(f"unknown mode {mode!r}: tensor or pipeline")
