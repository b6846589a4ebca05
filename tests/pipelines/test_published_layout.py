"""The published model layout loads: the tiny model laid out like Qwen-Image-Edit-2509/2511.

The published repos name ``["transformers", "Qwen2VLProcessor"]``, which under
transformers 5 wants a video processor (torchvision). These tests load exactly that
layout, with and without ``video_preprocessor_config.json``, through the backend and
through ``qwen-edit-chat edit --backend qwen --model DIR``; and the original
Qwen-Image-Edit through its own pipeline class.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from assistant.cli import main
from pipelines import BackendUnavailable, BadRequest, EditRequest, GenerateRequest
from pipelines.qwen import QwenBackend
from pipelines.tiny_model import build_tiny_model

FAST = dict(vae_area=128 * 128, output_area=128 * 128, max_output_area=128 * 128, steps=2,
            t2i_steps=2, cpu_threads=1, device="cpu")
no_torchvision = pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                                    reason="torchvision is installed: the published class loads as is")


@pytest.fixture(scope="module")
def without_video_config(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("layout") / "no-video-config"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "processor" / "video_preprocessor_config.json").unlink()
    return folder


@pytest.fixture(scope="module")
def original_edit_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("original") / "edit",
                            pipeline_class="QwenImageEditPipeline")


@no_torchvision
@pytest.mark.parametrize("video_config", [True, False])
def test_plain_diffusers_cannot_load_the_published_layout_here(tiny_model_dir, without_video_config,
                                                               video_config):
    """The failure users would have hit: proof that the fixture really is the published layout."""
    from diffusers import QwenImageEditPlusPipeline

    folder = tiny_model_dir if video_config else without_video_config
    with pytest.raises((ImportError, OSError, ValueError)):
        QwenImageEditPlusPipeline.from_pretrained(folder)


@pytest.mark.parametrize("video_config", [True, False])
def test_the_backend_loads_the_published_layout(tiny_model_dir, without_video_config, photo,
                                                video_config):
    folder = tiny_model_dir if video_config else without_video_config
    backend = QwenBackend(model=str(folder), t2i_model=None, **FAST)
    result = backend.edit(EditRequest("make it night", images=(photo,), seed=3))
    assert result.image.size == photo.size
    assert result.info["pipeline"] == "QwenImageEditPlusPipeline"
    assert type(backend._edit_pipe.processor).__name__ == "ImageOnlyQwen2VLProcessor"
    # The published tokenizer/ has no tokenizer.json: the slow files must give the same ids.
    ids = backend._edit_pipe.tokenizer("<|im_start|>make it night<|im_end|>").input_ids
    assert ids[0] == backend._edit_pipe.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert np.asarray(result.image).std() > 0


@pytest.mark.parametrize("video_config", [True, False])
def test_the_cli_edits_with_the_published_layout(tiny_model_dir, without_video_config, tmp_path,
                                                 capsys, video_config):
    folder = tiny_model_dir if video_config else without_video_config
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "night.png"
    code = main(["edit", "--backend", "qwen", "--model", str(folder), "--steps", "2",
                 "--seed", "5", str(photo), "make it night", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert Image.open(out).size == (64, 48)
    assert "seed 5" in captured.out


def test_the_original_edit_model_loads_through_its_own_pipeline(original_edit_model, photo,
                                                                 make_picture):
    index = json.loads((original_edit_model / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPipeline"
    backend = QwenBackend(model=str(original_edit_model), t2i_model=None, **FAST)
    assert backend.capabilities.max_input_images == 1  # known before loading
    result = backend.edit(EditRequest("make it night", images=(photo,), seed=1))
    assert result.info["pipeline"] == "QwenImageEditPipeline"
    assert result.image.size == photo.size
    with pytest.raises(BadRequest, match="one picture at a time"):
        backend.edit(EditRequest("combine", images=(photo, make_picture(32, 32)), seed=1))
    assert backend.generate(GenerateRequest("a fox", seed=1)).info["pipeline"] == "QwenImagePipeline"


def test_a_text_to_image_model_is_refused_as_an_edit_model(tiny_model_dir, tmp_path, photo):
    folder = tmp_path / "t2i-only"
    shutil.copytree(tiny_model_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "QwenImagePipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    backend = QwenBackend(model=str(folder), t2i_model=None, **FAST)
    with pytest.raises(BackendUnavailable, match="not an image edit model.*Qwen-Image-Edit-2511"):
        backend.edit(EditRequest("x", images=(photo,)))


def test_a_broken_config_is_reported_as_broken_not_as_missing(tiny_model_dir, tmp_path, photo):
    folder = tmp_path / "bad-config"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    config["attention_head_dim"] = 15  # the RoPE axes no longer sum to it
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    backend = QwenBackend(model=str(folder), t2i_model=None, **FAST)
    with pytest.raises(BackendUnavailable) as err:
        backend.edit(EditRequest("x", images=(photo,)))
    message = str(err.value)
    assert "not on this machine" not in message and "download" not in message
    assert str(folder) in message


def test_a_value_error_for_a_hub_model_is_not_called_missing():
    from pipelines.loading import load_or_explain

    def load():
        raise ValueError("Cannot load <class 'Qwen2VLProcessor'>: unexpected keyword")

    with pytest.raises(BackendUnavailable) as err:
        load_or_explain("Qwen/Qwen-Image-Edit-2511", load)
    message = str(err.value)
    assert message.startswith("Could not load the model Qwen/Qwen-Image-Edit-2511: Cannot load")
    assert "not on this machine" not in message
