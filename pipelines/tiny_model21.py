"""Builds the tiny random Qwen-Image-2.1 model, offline, into a cache folder.

Owns the tiny 2.1 model's recipe (component sizes, tokenizer, chat template, fixed
seed) and building it once into its own cache folder. Knows nothing about backends,
requests or the chat: the result is an ordinary diffusers folder that
``QwenImage21Pipeline.from_pretrained`` loads (given the processor, see below).

Laid out like the published ``Qwen/Qwen-Image-2.1`` repo: ``model_index.json`` names
``QwenImage21Pipeline`` with ``["transformers", "Qwen3VLProcessor"]``,
``Qwen3VLForConditionalGeneration``, ``QwenImage21Transformer2DModel`` and
``AutoencoderKLQwenImage21``; there is no ``tokenizer/`` folder, the tokenizer lives
in ``processor/`` beside ``preprocessor_config.json`` (``Qwen2VLImageProcessorFast``,
16 px patches), ``video_preprocessor_config.json`` (``Qwen3VLVideoProcessor``) and
``chat_template.jinja``. Like the published processor it does not load as named
without torchvision (transformers 5 wants a video processor): the qwen backend loads
it as ``pipelines.processor.ImageOnlyQwen3VLProcessor``, which the files never name.

What is tiny: a 2-layer Qwen3-VL (hidden 32, a 1-block vision tower with deepstack),
a 2-block transformer (2 heads x 16), and a VAE with the real 16x depth, RGBA in and
out and the real 64 latent channels, at 8 base channels. The weights are random, so
its pictures are noise; what it is for is running the real 2.1 code path on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .tiny_model import (
    SPECIAL_TOKENS,
    _CORPUS,
    _build_scheduler,
    _build_tokenizer,
    _slow_tokenizer_files,
    _write_json,
)

# The model name the tiny backend knows it by: get_backend("tiny", model=TINY21).
TINY21 = "tiny-2.1"
PIPELINE_CLASS = "QwenImage21Pipeline"
# Bump when the recipe changes so old caches are rebuilt, not reused.
TINY21_MODEL_VERSION = 1
ENV_DIR = "QEC_TINY21_MODEL_DIR"
_SEED = 0
# Its own marker file, so the Edit Plus builder never takes this folder for a stale
# build of its own (and rebuilds it), nor the other way round.
MARKER = "tiny_model21.json"
_NOTE = "Untrained random Qwen-Image-2.1 weights for tests; its images are noise."

PUBLISHED_PROCESSOR = ["transformers", "Qwen3VLProcessor"]
PROCESSOR_CLASS = "Qwen3VLProcessor"
# Qwen3-VL's vision preprocessing as the published processor/ names it: 16 px
# patches, 2x2 merge, mean/std 0.5, 256x256 to 4096x4096 pixels.
IMAGE_PROCESSOR = {
    "image_processor_type": "Qwen2VLImageProcessorFast",
    "processor_class": PROCESSOR_CLASS,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "merge_size": 2,
    "patch_size": 16,
    "temporal_patch_size": 2,
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
}
VIDEO_PROCESSOR = {
    **{k: v for k, v in IMAGE_PROCESSOR.items() if k != "image_processor_type"},
    "video_processor_type": "Qwen3VLVideoProcessor",
    "size": {"longest_edge": 25165824, "shortest_edge": 4096},
    "do_sample_frames": True,
    "fps": 2,
    "min_frames": 4,
    "max_frames": 768,
}

# Qwen3-VL's ChatML template, cut down to what an image pipeline reaches: system,
# user and assistant turns whose content is a string or a list of text and images.
CHAT_TEMPLATE = """{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\\n' }}
    {%- if message.content is string %}
        {{- message.content }}
    {%- else %}
        {%- for content in message.content %}
            {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif content.type == 'video' or 'video' in content %}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' }}
            {%- elif 'text' in content %}
                {{- content.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# The 2.1 pipeline's system prompt and picture labels join the Edit Plus corpus, so
# they become a few tokens each.
_CORPUS21 = _CORPUS + (
    "Comprehend and analyze the provided prompt.",
    "<image1> <image2> <image3> <image4> <image5> <image6> <image7> <image8> <image9> <image10>",
)


def default_tiny21_model_dir() -> Path:
    """``$QEC_TINY21_MODEL_DIR``, else ``~/.cache/qwen-edit-chat/tiny21-model-v1``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "qwen-edit-chat" / f"tiny21-model-v{TINY21_MODEL_VERSION}"


def is_built(path: str | os.PathLike) -> bool:
    try:
        return json.loads((Path(path) / MARKER).read_text()).get("version") == TINY21_MODEL_VERSION
    except (OSError, ValueError):
        return False


def ensure_tiny21_model(path: str | os.PathLike | None = None) -> Path:
    """Return the tiny 2.1 model folder, building it first if it is missing.

    As ``tiny_model.ensure_tiny_model``: a file lock lets one process build while
    others wait, and the folder appears only complete (built beside it, renamed).
    """
    from filelock import FileLock

    target = Path(path).expanduser() if path is not None else default_tiny21_model_dir()
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_built(target):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build_tiny21_model(tmp)
            os.chmod(tmp, 0o755)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny21_model(out_dir: str | os.PathLike) -> Path:
    """Write the tiny 2.1 pipeline to ``out_dir`` (deterministic: same bytes every time)."""
    import torch
    from diffusers import QwenImage21Pipeline

    out = Path(out_dir)
    tokenizer = _build_tokenizer(_CORPUS21)
    tokenizer.chat_template = CHAT_TEMPLATE
    processor = _build_processor(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        transformer = _build_transformer()
        torch.manual_seed(_SEED)
        vae = _build_vae()
        torch.manual_seed(_SEED)
        text_encoder = _build_text_encoder(tokenizer)
    pipe = QwenImage21Pipeline(
        scheduler=_build_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        processor=processor,
        transformer=transformer,
    )
    pipe.save_pretrained(out)
    lay_out_like_published(out)
    (out / MARKER).write_text(json.dumps(
        {"version": TINY21_MODEL_VERSION, "seed": _SEED, "note": _NOTE}, indent=2))
    return out


def lay_out_like_published(out: Path) -> None:
    """Rewrite a folder saved by ``save_pretrained`` into the published repo's layout."""
    index_file = out / "model_index.json"
    index = json.loads(index_file.read_text())
    index["processor"] = PUBLISHED_PROCESSOR
    _write_json(index_file, index)

    processor = out / "processor"
    (processor / "processor_config.json").unlink()
    _write_json(processor / "preprocessor_config.json", IMAGE_PROCESSOR)
    _write_json(processor / "video_preprocessor_config.json", VIDEO_PROCESSOR)
    # The published processor/ keeps tokenizer.json beside the slow files.
    _slow_tokenizer_files(processor, processor_class=PROCESSOR_CLASS)


def _build_processor(tokenizer):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from .processor import ImageOnlyQwen3VLProcessor

    image_processor = Qwen2VLImageProcessorPil(
        patch_size=IMAGE_PROCESSOR["patch_size"],
        temporal_patch_size=IMAGE_PROCESSOR["temporal_patch_size"],
        merge_size=IMAGE_PROCESSOR["merge_size"],
        image_mean=IMAGE_PROCESSOR["image_mean"],
        image_std=IMAGE_PROCESSOR["image_std"],
        size=dict(IMAGE_PROCESSOR["size"]),
    )
    return ImageOnlyQwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     chat_template=CHAT_TEMPLATE)


def _build_text_encoder(tokenizer):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            # head dim 16 -> 8 rotary pairs, interleaved over (time, height, width)
            # like the real [24, 20, 20] over 128.
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                "mrope_section": [4, 2, 2], "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,  # the text model's hidden size
            "patch_size": IMAGE_PROCESSOR["patch_size"],
            "spatial_merge_size": IMAGE_PROCESSOR["merge_size"],
            "temporal_patch_size": IMAGE_PROCESSOR["temporal_patch_size"],
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen3VLForConditionalGeneration(config).eval()


def _build_transformer():
    from diffusers import QwenImage21Transformer2DModel

    return QwenImage21Transformer2DModel(
        patch_size=1,
        in_channels=64,  # the VAE's 64 latent channels, unpatched, as in the real model
        out_channels=64,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        context_in_dim=32,  # the text encoder's hidden size
        mlp_ratio=3,
        axes_dims_rope=(4, 6, 6),  # sums to the head dim
        causal_condition=True,
    ).eval()


def _build_vae():
    from diffusers import AutoencoderKLQwenImage21

    # The real depth (four down levels: the pipeline assumes 16x), RGBA and 64 latent
    # channels with the real latent statistics; only the widths shrink.
    return AutoencoderKLQwenImage21(
        base_dim=8,
        decoder_base_dim=8,
        z_dim=64,
        dim_mult=[1, 1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True, True],
    ).eval()


def main() -> None:  # pragma: no cover - convenience entry point
    print(ensure_tiny21_model())


if __name__ == "__main__":  # pragma: no cover
    main()
