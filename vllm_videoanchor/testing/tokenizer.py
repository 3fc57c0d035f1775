"""The tokenizer and chat template every tiny model shares: a byte-level BPE trained here on a
small corpus (no download), with each family's special tokens, and the Qwen2-VL chat template,
from which the other families' templates are made by swapping the media placeholders.
"""

from __future__ import annotations

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
VOCAB_SIZE = 512

# The Qwen2-VL chat template, reduced to what the tests and the demo send.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or part['type'] == 'video_url' %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "The camera moves through a room with a table, two chairs, a window and a lamp. "
    "How many chairs are there? Which object is closest to the door? Describe the video. "
    "user assistant system You are a helpful assistant. left right above below near far "
    "red green blue yellow square circle moving static frame image picture scene object "
    "0 1 2 3 4 5 6 7 8 9 ten twenty distance meters what where when why how yes no"
)


def chat_template(image: str, video: str) -> str:
    """CHAT_TEMPLATE with `image` / `video` as the text of an image / a video part."""
    return (CHAT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", image)
            .replace("<|vision_start|><|video_pad|><|vision_end|>", video))


def build_tokenizer(special_tokens=tuple(SPECIAL_TOKENS), chat_template=CHAT_TEMPLATE):
    """A byte-level BPE tokenizer with the given special tokens, trained on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # the corpus is too small to reach VOCAB_SIZE: BPE stops at 464 learned tokens, so the special
    # tokens take ids 464 upwards in list order (docs/tiny-models.md lists them per family)
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    tokenizer.add_special_tokens(list(special_tokens))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chat_template,
        model_max_length=8192,
    )
