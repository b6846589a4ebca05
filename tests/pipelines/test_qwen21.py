"""Qwen-Image-2.1 on its tiny model: laid out like the published repo, loaded through
the real classes, editing with up to ten pictures and generating from words alone,
through the backends and the command line; its limit and licence known before loading."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

import pipelines
from assistant.cli import main
from pipelines import BackendUnavailable, BadRequest, EditRequest, GenerateRequest, get_backend
from pipelines import doctor, loading
from pipelines.tiny import TINY21
from pipelines.tiny_model21 import MARKER, build_tiny21_model, ensure_tiny21_model

pytestmark = pytest.mark.timeout(300)
FAST = dict(vae_area=128 * 128, output_area=128 * 128, max_output_area=128 * 128, steps=2,
            t2i_steps=2, cpu_threads=1, device="cpu")
no_torchvision = pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                                    reason="torchvision is installed: the published class loads as is")


@pytest.fixture(scope="module")
def tiny21_dir(tmp_path_factory):
    """A freshly built tiny 2.1 model; ``QEC_TINY21_MODEL_DIR`` points at it meanwhile."""
    path = tmp_path_factory.mktemp("tiny21-cache") / "tiny21-model"
    old = os.environ.get("QEC_TINY21_MODEL_DIR")
    os.environ["QEC_TINY21_MODEL_DIR"] = str(path)
    ensure_tiny21_model(path)
    yield path
    if old is None:
        os.environ.pop("QEC_TINY21_MODEL_DIR", None)
    else:
        os.environ["QEC_TINY21_MODEL_DIR"] = old


@pytest.fixture(scope="module")
def tiny21(tiny21_dir):
    backend = get_backend("tiny", model=TINY21, steps=2, t2i_steps=2)
    backend.load()
    return backend


def pictures(count, seed=0, size=(64, 64)):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
            for _ in range(count)]


def read_json(path):
    return json.loads(path.read_text())


# ----- the tiny model ---------------------------------------------------------------------


def test_the_tiny_model_is_laid_out_like_the_published_repo(tiny21_dir):
    index = read_json(tiny21_dir / "model_index.json")
    assert index["_class_name"] == "QwenImage21Pipeline"
    assert {k: v for k, v in index.items() if isinstance(v, list)} == {
        "processor": ["transformers", "Qwen3VLProcessor"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen3VLForConditionalGeneration"],
        "transformer": ["diffusers", "QwenImage21Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLQwenImage21"],
    }
    # No tokenizer/ folder: the tokenizer lives in processor/, as published.
    assert sorted(p.name for p in tiny21_dir.iterdir() if p.is_dir()) == [
        "processor", "scheduler", "text_encoder", "transformer", "vae"]
    processor = tiny21_dir / "processor"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                 "special_tokens_map.json", "chat_template.jinja"):
        assert (processor / name).is_file(), name
    assert not (processor / "processor_config.json").exists()
    image = read_json(processor / "preprocessor_config.json")
    assert image["image_processor_type"] == "Qwen2VLImageProcessorFast"
    assert image["processor_class"] == "Qwen3VLProcessor"
    assert (image["patch_size"], image["merge_size"]) == (16, 2)
    video = read_json(processor / "video_preprocessor_config.json")
    assert video["video_processor_type"] == "Qwen3VLVideoProcessor"
    assert read_json(processor / "tokenizer_config.json")["processor_class"] == "Qwen3VLProcessor"
    vae = read_json(tiny21_dir / "vae" / "config.json")
    assert (vae["z_dim"], vae["in_channels"], vae["out_channels"]) == (64, 4, 4)  # 64 channels, RGBA
    assert len(vae["temperal_downsample"]) == 4  # 16x, which the pipeline assumes
    transformer = read_json(tiny21_dir / "transformer" / "config.json")
    assert (transformer["in_channels"], transformer["patch_size"]) == (64, 1)
    text = read_json(tiny21_dir / "text_encoder" / "config.json")
    assert text["architectures"] == ["Qwen3VLForConditionalGeneration"]
    assert transformer["context_in_dim"] == text["text_config"]["hidden_size"]
    weights = sum(p.stat().st_size for p in tiny21_dir.rglob("*.safetensors"))
    assert weights < 4 * 2**20


def test_the_build_is_deterministic(tiny21_dir, tmp_path):
    again = build_tiny21_model(tmp_path / "again")

    def digests(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and p.name != MARKER}

    assert digests(again) == digests(tiny21_dir)


@no_torchvision
def test_plain_diffusers_cannot_load_the_published_layout_here(tiny21_dir):
    """As users would hit with the real repo: proof that the fixture is the published layout."""
    from diffusers import QwenImage21Pipeline

    with pytest.raises((ImportError, OSError, ValueError)):
        QwenImage21Pipeline.from_pretrained(tiny21_dir)


# ----- the backends -----------------------------------------------------------------------


def test_it_edits_with_four_references(tiny21):
    assert tiny21.capabilities.max_input_images == 10
    five = pictures(5, seed=1)
    five[0] = pictures(1, seed=9, size=(96, 64))[0]
    result = tiny21.edit(EditRequest("put all of them in one room", images=tuple(five), seed=3))
    assert result.image.size == (96, 64) and result.image.mode == "RGB"
    info = result.info
    assert info["pipeline"] == "QwenImage21Pipeline" and info["backend"] == "tiny"
    assert info["input_sizes"] == [list(p.size) for p in five]
    assert len(info["vae_sizes"]) == 5 and info["vae_sizes"] == info["condition_sizes"]
    # Generated on Picture 1's own grid, so the picture does not shift between turns.
    assert [info["generate_width"], info["generate_height"]] == info["vae_sizes"][0]
    # No guidance by default, as the model card says.
    assert info["true_cfg_scale"] == 1.0 and info["negative_prompt"] is None
    assert info["steps"] == info["steps_run"] == 2
    assert np.asarray(result.image).std() > 0
    json.dumps(info)
    # Picture 5 reaches the model: same seed and words, different result without it.
    four = tiny21.edit(EditRequest("put all of them in one room", images=tuple(five[:4]), seed=3))
    assert not np.array_equal(np.asarray(four.image), np.asarray(result.image))
    again = tiny21.edit(EditRequest("put all of them in one room", images=tuple(five), seed=3))
    assert np.array_equal(np.asarray(again.image), np.asarray(result.image))


def test_ten_pictures_at_most(tiny21):
    ten = tuple(pictures(10, seed=2, size=(32, 32)))
    assert tiny21.edit(EditRequest("a collage", images=ten, seed=1)).image.size == (32, 32)
    with pytest.raises(BadRequest, match="at most 10"):
        EditRequest("a collage", images=ten + ten[:1])


def test_it_generates_from_words_alone_with_the_same_pipeline(tiny21):
    result = tiny21.generate(GenerateRequest("a red fox in the snow", seed=5))
    assert result.image.size == (1024, 1024)  # diffusers' default output_resolution
    assert result.info["mode"] == "generate"
    assert result.info["pipeline"] == "QwenImage21Pipeline"
    assert result.info["t2i_model"] == tiny21.model
    assert tiny21._t2i_pipe is tiny21._edit_pipe  # no second pipeline
    assert result.info["generate_width"] % 32 == 0 and result.info["generate_height"] % 32 == 0
    sized = tiny21.generate(GenerateRequest("a fox", seed=5, width=200, height=120))
    assert sized.image.size == (200, 120)
    assert (sized.info["generate_width"], sized.info["generate_height"]) == (192, 128)


def test_progress_every_step_and_no_previews_for_its_64_channel_latents(tiny21):
    calls = []
    tiny21.edit(EditRequest("x", images=tuple(pictures(2)), seed=1, steps=3),
                progress=lambda step, total, preview: calls.append((step, total, preview)))
    assert [(s, t) for s, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(p is None for _, _, p in calls)


def test_the_qwen_backend_loads_the_published_layout(tiny21_dir):
    backend = get_backend("qwen", model=str(tiny21_dir), t2i_model=None, **FAST)
    assert backend.capabilities.max_input_images == 10  # known before loading
    photo = pictures(1, seed=4, size=(120, 90))[0]
    result = backend.edit(EditRequest("make it night", images=(photo, *pictures(3)), seed=2))
    assert result.image.size == (120, 90)
    assert type(backend._edit_pipe.processor).__name__ == "ImageOnlyQwen3VLProcessor"
    # Tiny areas: each picture's resolution rises until the vision processor keeps it
    # as is (its smallest picture is 256x256), and the output stays on Picture 1's grid.
    assert all(w * h >= 256 * 256 for w, h in result.info["vae_sizes"])
    assert [result.info["generate_width"], result.info["generate_height"]] == result.info["vae_sizes"][0]
    generated = backend.generate(GenerateRequest("a fox", seed=1))
    assert generated.info["pipeline"] == "QwenImage21Pipeline"


def test_the_tiny_backend_takes_a_2_1_folder_as_its_model(tiny21_dir):
    backend = get_backend("tiny", model=str(tiny21_dir))
    assert backend.tiny21 and backend.capabilities.max_input_images == 10
    assert backend.model_dir == tiny21_dir


# ----- known before loading ---------------------------------------------------------------


def test_max_pictures_follows_the_model(tiny21_dir, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("QEC_MODEL", raising=False)
    assert pipelines.max_pictures("tiny") == 3
    assert pipelines.max_pictures("tiny", TINY21) == 10
    assert pipelines.max_pictures("tiny", str(tiny21_dir)) == 10
    assert pipelines.max_pictures("tiny", str(tiny_model_dir)) == 3
    assert pipelines.max_pictures("qwen") == 3  # Qwen-Image-Edit-2511
    assert pipelines.max_pictures("qwen", "Qwen/Qwen-Image-2.1") == 10  # by name, not downloaded
    assert pipelines.max_pictures("qwen", str(tiny21_dir)) == 10  # by its model_index.json
    assert pipelines.max_pictures("qwen", "Qwen/Qwen-Image-Edit-2509") == 3
    assert pipelines.max_pictures("qwen", "Qwen/Qwen-Image-Edit") == 1
    assert pipelines.max_pictures("remote") == 3
    monkeypatch.setenv("QEC_MODEL", "Qwen/Qwen-Image-2.1")
    assert pipelines.max_pictures("qwen") == 10
    with pytest.raises(BackendUnavailable, match="Unknown backend"):
        pipelines.max_pictures("dall-e")


def test_the_licence_is_known_before_loading_and_doctor_prints_it(tiny21_dir, monkeypatch):
    monkeypatch.delenv("QEC_MODEL", raising=False)
    notice = loading.licence("Qwen/Qwen-Image-2.1")
    assert "Qwen Research License" in notice and "non-commercial" in notice
    assert "https://huggingface.co/Qwen/Qwen-Image-2.1" in notice
    assert loading.licence(str(tiny21_dir)) == notice
    assert pipelines.licence("tiny", TINY21) == notice
    assert pipelines.licence("qwen", "Qwen/Qwen-Image-2.1") == notice
    for backend, model in (("tiny", None), ("qwen", None), ("qwen", "Qwen/Qwen-Image-Edit-2509"),
                           ("remote", None)):
        assert pipelines.licence(backend, model) is None
    assert f"Licence: {notice}" in doctor.report(gpu_memory_gib=80, model="Qwen/Qwen-Image-2.1")
    assert not any(line.startswith("Licence") for line in doctor.report(gpu_memory_gib=80))


# ----- the command line --------------------------------------------------------------------


def save_pictures(folder, count, seed=0):
    paths = []
    for i in range(count):
        path = folder / f"p{i + 1}.png"
        pictures(1, seed=seed + i, size=(48 + 8 * (i % 3), 40))[0].save(path)
        paths.append(str(path))
    return paths


def test_the_cli_edits_with_four_references_on_tiny_2_1(tiny21_dir, tmp_path, capsys):
    paths = save_pictures(tmp_path, 5)
    out = tmp_path / "together.png"
    code = main(["edit", "--backend", "tiny", "--model", TINY21, "--steps", "2", "--seed", "5",
                 *paths, "put them all together", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert Image.open(out).size == Image.open(paths[0]).size
    assert "seed 5" in captured.out


def test_the_cli_generates_on_tiny_2_1(tiny21_dir, tmp_path, capsys):
    out = tmp_path / "fox.png"
    code = main(["generate", "a red fox", "--backend", "tiny", "--model", TINY21, "--steps", "2",
                 "--seed", "1", "--size", "64x48", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size == (64, 48)


def test_the_cli_refuses_more_pictures_than_the_model_takes(tiny21_dir, tiny_model_dir, tmp_path,
                                                            capsys):
    paths = save_pictures(tmp_path, 11)
    code = main(["edit", "--backend", "tiny", "--model", TINY21, *paths, "combine",
                 "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "at most 10 images" in err and "got 11" in err
    code = main(["edit", "--backend", "tiny", *paths[:4], "combine", "-o", str(tmp_path / "y.png")])
    err = capsys.readouterr().err
    assert code == 2 and "at most 3 images" in err and "got 4" in err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
