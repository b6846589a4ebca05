"""Builds the tiny random Qwen Image Edit Plus model, offline, into a cache folder.

Owns the tiny model's recipe (component sizes, tokenizer, fixed seed) and the
build-once-and-rename dance that keeps a half-built folder from ever being loaded.
Knows nothing about backends, requests or the chat: the result is an ordinary
diffusers folder that ``QwenImageEditPlusPipeline.from_pretrained`` loads.

The folder is laid out like the published Qwen-Image-Edit-2509/2511 repos: the same
class names in ``model_index.json`` (``["transformers", "Qwen2VLProcessor"]`` for the
processor), the same subfolders and the same processor and tokenizer files
(``preprocessor_config.json``, ``video_preprocessor_config.json``, ``vocab.json``,
``merges.txt``...), so the tests load what users load. What must differ is overridden
when loading, never written into the files.

The weights are random, so its pictures are noise. What it is for: running the real
diffusers code path (text encoder with vision tower, VAE, transformer, scheduler)
in tests and on machines without a GPU, in well under a second.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# Bump when the recipe changes so old caches are rebuilt, not reused.
TINY_MODEL_VERSION = 2
ENV_DIR = "QEC_TINY_MODEL_DIR"
_SEED = 0
_MARKER = "tiny_model.json"
_NOTE = "Untrained random weights for tests; its images are noise."

# The Qwen2 chat and vision special tokens, in the real tokenizer's order.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A few sentences in the style of the prompts the pipelines send (their system
# templates included), so common words become single tokens and sequences stay short.
_CORPUS = (
    "Describe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the "
    "image. Generate a new image that meets the user's requirements while maintaining "
    "consistency with the original input where appropriate.",
    "Describe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:",
    "Picture 1: Picture 2: Picture 3: system user assistant",
    "Make the background darker and add rain. Turn the cat into a tiger.",
    "A red fox sitting in the snow at night, cinematic lighting, ultra detailed.",
    "Replace the sky with a sunset and remove the people on the left.",
    "Put the person from picture 2 next to the dog in picture 1, same style.",
    "Change the text on the sign to say hello world, keep everything else the same.",
)


def default_tiny_model_dir() -> Path:
    """``$QEC_TINY_MODEL_DIR``, else ``~/.cache/qwen-edit-chat/tiny-model-v1``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "qwen-edit-chat" / f"tiny-model-v{TINY_MODEL_VERSION}"


def is_built(path: str | os.PathLike) -> bool:
    marker = Path(path) / _MARKER
    try:
        return json.loads(marker.read_text()).get("version") == TINY_MODEL_VERSION
    except (OSError, ValueError):
        return False


def ensure_tiny_model(path: str | os.PathLike | None = None) -> Path:
    """Return the tiny model folder, building it first if it is missing.

    Safe when several processes call it at once: a file lock lets one build while
    the others wait, and the folder appears only complete (built in a temporary
    sibling, then renamed into place).
    """
    from filelock import FileLock

    target = Path(path).expanduser() if path is not None else default_tiny_model_dir()
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_built(target):  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build_tiny_model(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is not secret
            if target.exists():  # stale or from an older recipe
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_model(out_dir: str | os.PathLike, *, video_config: bool = True,
                     pipeline_class: str = "QwenImageEditPlusPipeline") -> Path:
    """Write the tiny pipeline to ``out_dir`` (deterministic: same bytes every time).

    ``video_config`` writes the processor's ``video_preprocessor_config.json``, as
    the published repos do; ``pipeline_class`` names the pipeline in
    ``model_index.json`` (``QwenImageEditPipeline`` for the original Qwen-Image-Edit,
    whose components are the same).
    """
    import torch
    from diffusers import QwenImageEditPlusPipeline

    out = Path(out_dir)
    tokenizer = _build_tokenizer()
    processor = _build_processor(tokenizer)
    # Each component gets the same fixed seed so adding one never changes another.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        transformer = _build_transformer()
        torch.manual_seed(_SEED)
        vae = _build_vae()
        torch.manual_seed(_SEED)
        text_encoder = _build_text_encoder(tokenizer)
    pipe = QwenImageEditPlusPipeline(
        scheduler=_build_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
    pipe.save_pretrained(out)
    lay_out_like_published(out, video_config=video_config, pipeline_class=pipeline_class)
    (out / _MARKER).write_text(
        json.dumps({"version": TINY_MODEL_VERSION, "seed": _SEED, "note": _NOTE}, indent=2)
    )
    return out


# The files of the published repos' processor/ and tokenizer/ folders (transformers 4
# wrote them; transformers 5 writes processor_config.json and tokenizer.json instead).
PUBLISHED_PROCESSOR = ["transformers", "Qwen2VLProcessor"]
PROCESSOR_CLASS = "Qwen2VLProcessor"


def lay_out_like_published(out: Path, *, video_config: bool = True,
                           pipeline_class: str = "QwenImageEditPlusPipeline") -> None:
    """Rewrite a folder saved by ``save_pretrained`` into the published repos' layout."""
    index_file = out / "model_index.json"
    index = json.loads(index_file.read_text())
    index["_class_name"] = pipeline_class
    index["processor"] = PUBLISHED_PROCESSOR
    _write_json(index_file, index)

    processor = out / "processor"
    combined = json.loads((processor / "processor_config.json").read_text())
    (processor / "processor_config.json").unlink()
    image = dict(combined["image_processor"], processor_class=PROCESSOR_CLASS,
                 min_pixels=combined["image_processor"]["size"]["shortest_edge"],
                 max_pixels=combined["image_processor"]["size"]["longest_edge"])
    _write_json(processor / "preprocessor_config.json", image)
    if video_config:
        video = {k: v for k, v in image.items() if k != "image_processor_type"}
        video.update(video_processor_type="Qwen2VLVideoProcessor", fps=2.0,
                     min_frames=4, max_frames=768, do_sample_frames=False)
        _write_json(processor / "video_preprocessor_config.json", video)
    _slow_tokenizer_files(processor, processor_class=PROCESSOR_CLASS)
    # The tokenizer/ folder ships the slow files only: no tokenizer.json.
    _slow_tokenizer_files(out / "tokenizer", processor_class=None)
    (out / "tokenizer" / "tokenizer.json").unlink()


def _slow_tokenizer_files(folder: Path, *, processor_class) -> None:
    fast = json.loads((folder / "tokenizer.json").read_text())
    vocab = fast["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in fast["model"]["merges"]]
    added = {t["content"]: t["id"] for t in fast["added_tokens"]}
    _write_json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    _write_json(folder / "added_tokens.json", added)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("backend", None)
    config.pop("processor_class", None)
    if processor_class:
        config["processor_class"] = processor_class
    config["errors"] = "replace"
    config["added_tokens_decoder"] = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                         "single_word", "special")}
        for t in fast["added_tokens"]
    }
    _write_json(config_file, config)
    _write_json(folder / "special_tokens_map.json", {
        "eos_token": config.get("eos_token"), "pad_token": config.get("pad_token"),
        "additional_special_tokens": [t for t in added if t not in ("<|endoftext|>",)],
    })


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _build_tokenizer(corpus=_CORPUS):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=32768)
    tokenizer.add_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    return tokenizer


def _build_processor(tokenizer):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from .processor import ImageOnlyQwen2VLProcessor

    # The real model's vision preprocessing (14 px patches, 2x2 merge, CLIP mean/std).
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=14, temporal_patch_size=2, merge_size=2,
        min_pixels=56 * 56, max_pixels=28 * 28 * 1280,
    )
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _build_text_encoder(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            # head dim 16 -> 8 rotary pairs split over (time, height, width)
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _build_transformer():
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,  # 16 latent channels x 2x2 packing, as in the real model
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # the text encoder's hidden size
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),  # sums to the head dim
        zero_cond_t=True,  # like Qwen-Image-Edit-2511
    ).eval()


def _build_vae():
    from diffusers import AutoencoderKLQwenImage

    # Three down levels give the real 8x factor; the real latent statistics stay.
    return AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()


# scheduler/scheduler_config.json of Qwen/Qwen-Image and Qwen/Qwen-Image-Edit-2511.
QWEN_IMAGE_SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}


def _build_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(QWEN_IMAGE_SCHEDULER_CONFIG)


def main() -> None:  # pragma: no cover - convenience entry point
    print(ensure_tiny_model())


if __name__ == "__main__":  # pragma: no cover
    main()
