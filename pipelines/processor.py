"""A Qwen2-VL processor that needs no video processor (so no torchvision).

Owns one class, importable by name: diffusers writes ``["pipelines.processor",
"ImageOnlyQwen2VLProcessor"]`` into the tiny model's ``model_index.json`` and imports
it from there when loading. Knows nothing about backends or the tiny model builder.

Why: transformers 5 insists on a video processor for ``Qwen2VLProcessor``, and that
class exists only when torchvision imports. The image edit pipelines never pass
videos, so dropping the attribute changes nothing they use.
"""

from __future__ import annotations

from transformers import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` with images and text only."""

    # transformers reads the sub-processors from the __init__ signature, so leaving
    # `video_processor` out of it is what removes the attribute.
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or (
            tokenizer.convert_tokens_to_ids(self.image_token)
        )
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or (
            tokenizer.convert_tokens_to_ids(self.video_token)
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


__all__ = ["ImageOnlyQwen2VLProcessor"]
