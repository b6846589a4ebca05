"""The backend protocol: requests, conversions, errors, the registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

import pipelines
from pipelines import (
    Backend,
    BackendError,
    BackendUnavailable,
    BadRequest,
    Cancelled,
    EditRequest,
    GenerateRequest,
    get_backend,
)


def test_unknown_backend_name_lists_the_known_ones():
    with pytest.raises(BackendUnavailable) as err:
        get_backend("stable-diffusion")
    message = str(err.value)
    assert "stable-diffusion" in message
    for name in ("qwen", "remote", "tiny"):
        assert name in message
    assert pipelines.backend_names() == ["qwen", "remote", "tiny"]


def test_registry_builds_the_tiny_and_qwen_backends_without_loading(tiny_model_dir):
    tiny = get_backend("tiny")
    qwen = get_backend("qwen", model=str(tiny_model_dir), device="cpu")
    for backend, name in ((tiny, "tiny"), (qwen, "qwen")):
        assert isinstance(backend, Backend)
        assert backend.name == name
        assert backend.capabilities.max_input_images == 3
        assert backend.capabilities.text_to_image
        assert backend._edit_pipe is None  # loading waits for the first call


def test_an_edit_needs_an_image(make_picture):
    with pytest.raises(BadRequest, match="needs an image"):
        EditRequest("make it blue", images=())


def test_a_request_takes_at_most_the_most_any_model_takes(make_picture):
    """Pictures per edit are the model's (3 for Edit Plus, 10 for Qwen-Image-2.1): the
    request refuses only more than any model takes; the backend checks its own."""
    img = make_picture(8, 8)
    with pytest.raises(BadRequest, match="at most 10"):
        EditRequest("make it blue", images=(img,) * 11)
    assert len(EditRequest("ok", images=(img,) * 10).images) == 10


def test_the_edit_plus_backend_takes_at_most_three_images(tiny, make_picture):
    img = make_picture(8, 8)
    assert tiny.capabilities.max_input_images == pipelines.MAX_INPUT_IMAGES == 3
    with pytest.raises(BadRequest, match="at most 3 pictures"):
        tiny.edit(EditRequest("make it blue", images=(img,) * 4))


@pytest.mark.parametrize("prompt", ["", "   ", "\n", None])
def test_an_empty_prompt_is_refused(prompt, make_picture):
    with pytest.raises(BadRequest, match="prompt is empty"):
        EditRequest(prompt, images=(make_picture(8, 8),))
    with pytest.raises(BadRequest, match="prompt is empty"):
        GenerateRequest(prompt)


def test_non_pictures_are_refused():
    with pytest.raises(BadRequest, match="PIL"):
        EditRequest("x", images=(np.zeros((4, 4, 3)),))


def test_grey_and_transparent_images_are_converted_not_refused(make_picture):
    grey = make_picture(10, 6, mode="L")
    rgba = Image.new("RGBA", (10, 6), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    request = EditRequest("x", images=(grey, rgba))
    assert [img.mode for img in request.images] == ["RGB", "RGB"]
    assert request.images[0].size == (10, 6)
    # Transparent pixels become white rather than black; opaque ones keep their colour.
    assert request.images[1].getpixel((5, 5)) == (255, 255, 255)
    assert request.images[1].getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("options, words", [
    ({"steps": 1}, "at least 2 steps"),
    ({"steps": 201}, "at most 200"),
    ({"seed": -1}, "seed"),
    ({"width": 8}, "between 16 and 4096"),
    ({"true_cfg_scale": -1.0}, "negative"),
])
def test_bad_options_are_refused_with_a_reason(options, words):
    with pytest.raises(BadRequest, match=words):
        GenerateRequest("a fox", **options)


def test_requests_are_frozen(make_picture):
    request = GenerateRequest("a fox")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.prompt = "a cat"


def test_every_error_is_a_backend_error_with_a_user_message():
    for cls in (BadRequest, BackendUnavailable, Cancelled):
        assert issubclass(cls, BackendError)
    assert "Stopped" in str(Cancelled())
