"""Loads a tiny model in vLLM (plugin active) and generates 3 tokens for the tests' video, for
tests/engine/test_tiny.py.

    python tests/support/tiny_script.py MODEL_DIR    # prints RESULTS {"prompt_tokens": N, "tokens": [...]}
"""

import json
import os
import sys

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def main(model: str) -> None:
    import numpy as np
    from vllm import LLM, SamplingParams

    from vllm_videoanchor.testing import model_spec

    spec = model_spec(model)
    llm = LLM(model=model, max_model_len=2048, enforce_eager=True, trust_remote_code=True,
              limit_mm_per_prompt={"video": 1}, max_num_batched_tokens=2048)
    video = np.random.default_rng(0).uniform(0, 255, (8, 112, 112, 3)).astype(np.uint8)
    prompt = f"<|im_start|>user\n{spec.video_placeholder}How many chairs?<|im_end|>\n<|im_start|>assistant\n"
    out = llm.generate({"prompt": prompt, "multi_modal_data": {"video": (video, spec.video_metadata())}},
                       SamplingParams(max_tokens=3, temperature=0.0))
    print("RESULTS " + json.dumps({"prompt_tokens": len(out[0].prompt_token_ids),
                                   "tokens": list(out[0].outputs[0].token_ids)}))


if __name__ == "__main__":
    main(sys.argv[1])
