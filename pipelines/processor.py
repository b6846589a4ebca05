"""Qwen2-VL and Qwen3-VL processors that need no video processor (so no torchvision).

Owns two classes, importable by name: the qwen backend loads a model's ``processor/``
folder through them (``from_pretrained(..., processor=...)``) when the published
``Qwen2VLProcessor`` (Edit Plus) or ``Qwen3VLProcessor`` (Qwen-Image-2.1) would not
load. Knows nothing about backends or the tiny model builders.

Why: transformers 5 insists on a video processor for both, and those classes exist
only when torchvision imports. The image pipelines never pass videos, so dropping
the attribute changes nothing they use.
"""

from __future__ import annotations

from transformers import Qwen2VLProcessor, Qwen3VLProcessor
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


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` (Qwen-Image-2.1's text encoder) with images and text only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        def token(name, default):
            return getattr(tokenizer, name, None) or default

        self.image_token = token("image_token", "<|image_pad|>")
        self.video_token = token("video_token", "<|video_pad|>")
        self.vision_start_token = token("vision_start_token", "<|vision_start|>")
        self.vision_end_token = token("vision_end_token", "<|vision_end|>")
        for name in ("image", "video", "vision_start", "vision_end"):
            text = getattr(self, f"{name}_token")
            setattr(self, f"{name}_token_id",
                    token(f"{name}_token_id", None) or tokenizer.convert_tokens_to_ids(text))
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


__all__ = ["ImageOnlyQwen2VLProcessor", "ImageOnlyQwen3VLProcessor"]
