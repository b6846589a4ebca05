"""The remote backend against real HTTP servers on 127.0.0.1.

The happy paths go through `pipelines.images_api` serving the tiny backend (a
recorder in between shows exactly what arrived); the failures use small servers that
refuse, fail, stall or reject, and each must give its own clear message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from PIL import Image

from pipelines import get_backend
from pipelines.base import (
    BackendError,
    BackendUnavailable,
    BadRequest,
    Cancelled,
    EditRequest,
    GenerateRequest,
)
from pipelines.images_api import create_app
from pipelines.remote import RemoteBackend

pytestmark = pytest.mark.timeout(180)


@contextlib.contextmanager
def serve(app, *, graceful_s: float = 1.0):
    """Run ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yield its /v1 URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful_s)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Recorder:
    """Passes calls to a real backend and keeps the requests that arrived."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.requests = []
        self.during_call = None  # optional hook run inside the call

    def generate(self, request, **kw):
        self.requests.append(request)
        if self.during_call:
            self.during_call()
        return self.inner.generate(request, **kw)

    def edit(self, request, **kw):
        self.requests.append(request)
        if self.during_call:
            self.during_call()
        return self.inner.edit(request, **kw)


@pytest.fixture(scope="module")
def recorder(tiny):  # `tiny`: the shared session backend from conftest.py
    return Recorder(tiny)


@pytest.fixture(scope="module")
def server_url(recorder):
    with serve(create_app(recorder)) as url:
        yield url


@pytest.fixture
def remote(server_url, recorder):
    recorder.requests.clear()
    recorder.during_call = None
    return RemoteBackend(base_url=server_url, timeout=120)


def picture(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def pixels(img):
    return np.asarray(img.convert("RGB"), dtype=np.int16)


# -- through the images API on the tiny backend ------------------------------------------


def test_edit_one_image_comes_back_at_picture_1_size(remote, recorder):
    calls = []
    result = remote.edit(
        EditRequest("make the sky purple", images=(picture(96, 64),), seed=5, steps=2),
        progress=lambda step, total, preview: calls.append((step, total, preview)),
    )
    assert result.image.size == (96, 64)
    assert result.image.mode == "RGB"
    assert calls == [(0, 1, None), (1, 1, None)]
    (arrived,) = recorder.requests
    # The model is asked for about 1 MP at Picture 1's ratio, in multiples of 16.
    assert (arrived.width, arrived.height) == (1248, 832)
    assert result.info["server_size"] == [1248, 832]
    assert result.info["backend"] == "remote"
    assert result.info["base_url"] == remote.base_url
    assert result.info["model"] == "Qwen/Qwen-Image-Edit-2511"


def test_edit_with_two_images_sends_both_in_order(remote, recorder):
    first, second = picture(64, 48, seed=1), picture(32, 80, seed=2)
    result = remote.edit(EditRequest("put the cat from Picture 2 on the sofa",
                                     images=(first, second), seed=9, steps=2, width=64, height=48))
    (arrived,) = recorder.requests
    assert [im.size for im in arrived.images] == [(64, 48), (32, 80)]
    assert (pixels(arrived.images[0]) == pixels(first)).all()
    assert (pixels(arrived.images[1]) == pixels(second)).all()
    assert arrived.prompt == "put the cat from Picture 2 on the sofa"
    assert result.image.size == (64, 48)
    assert result.info["input_sizes"] == [[64, 48], [32, 80]]


def test_generate_returns_the_asked_size(remote, recorder):
    result = remote.generate(GenerateRequest("a red fox in snow", seed=3, steps=2, width=64, height=48))
    assert result.image.size == (64, 48)
    (arrived,) = recorder.requests
    assert isinstance(arrived, GenerateRequest)
    assert (arrived.width, arrived.height) == (64, 48)
    assert result.info["operation"] == "generate"


def test_extra_parameters_arrive_and_are_recorded(remote, recorder):
    result = remote.edit(EditRequest("add rain", images=(picture(64, 64),), seed=1234, steps=3,
                                     true_cfg_scale=2.5, negative_prompt="blurry",
                                     width=48, height=48))
    (arrived,) = recorder.requests
    assert (arrived.seed, arrived.steps, arrived.true_cfg_scale, arrived.negative_prompt) == (
        1234, 3, 2.5, "blurry")
    assert (result.seed, result.steps) == (1234, 3)
    sent = result.info["sent"]
    assert sent["seed"] == 1234
    assert sent["num_inference_steps"] == 3
    assert sent["true_cfg_scale"] == 2.5
    assert sent["negative_prompt"] == "blurry"
    assert sent["guidance_scale"] == 1.0
    assert sent["size"] == "48x48"


def test_missing_options_are_filled_and_reported(remote, recorder):
    recorder.during_call = None
    result = remote.generate(GenerateRequest("a lighthouse", steps=2, width=32, height=32))
    (arrived,) = recorder.requests
    assert result.seed == arrived.seed and result.seed >= 1  # drawn here, so it is known
    assert arrived.negative_prompt == " "  # keeps true CFG on
    assert arrived.true_cfg_scale == 4.0
    assert result.info["seed"] == result.seed


def test_same_seed_gives_the_same_image(remote):
    request = GenerateRequest("a blue door", seed=42, steps=2, width=32, height=32)
    a = remote.generate(request).image
    b = remote.generate(request).image
    c = remote.generate(GenerateRequest("a blue door", seed=43, steps=2, width=32, height=32)).image
    assert (pixels(a) == pixels(b)).all()
    assert not (pixels(a) == pixels(c)).all()


def test_large_seed_survives_the_form_encoding(remote, recorder):
    remote.edit(EditRequest("x", images=(picture(32, 32),), seed=2**62 + 7, steps=2, width=32, height=32))
    assert recorder.requests[0].seed == 2**62 + 7


def test_cancel_before_sending_sends_nothing(remote, recorder):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        remote.generate(GenerateRequest("a fox", seed=1, steps=2, width=32, height=32), cancel=cancel)
    assert recorder.requests == []


def test_cancel_during_the_run_is_honoured_when_it_returns(remote, recorder):
    cancel = threading.Event()
    calls = []
    recorder.during_call = cancel.set
    with pytest.raises(Cancelled):
        remote.generate(GenerateRequest("a fox", seed=1, steps=2, width=32, height=32), cancel=cancel,
                        progress=lambda *a: calls.append(a))
    assert len(recorder.requests) == 1  # the server did run it
    assert calls == [(0, 1, None)]


def test_too_many_images_for_the_server_is_refused_locally(server_url, recorder):
    remote = RemoteBackend(base_url=server_url, max_input_images=1)
    recorder.requests.clear()
    with pytest.raises(BadRequest, match="at most 1"):
        remote.edit(EditRequest("x", images=(picture(16, 16), picture(16, 16))))
    assert recorder.requests == []


# -- the images API's own answers ------------------------------------------------------


def png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_images_api_accepts_repeated_image_parts(server_url, recorder):
    recorder.requests.clear()
    files = [("image", ("a.png", png(picture(40, 24)), "image/png")),
             ("image", ("b.png", png(picture(24, 40)), "image/png"))]
    data = {"prompt": "merge", "size": "32x32", "seed": "11", "num_inference_steps": "2"}
    r = httpx.post(f"{server_url}/images/edits", files=files, data=data, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    out = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert out.size == (32, 32) and body["size"] == "32x32" and body["seed"] == 11
    assert [im.size for im in recorder.requests[0].images] == [(40, 24), (24, 40)]


def test_images_api_turns_photos_upright_by_their_exif_orientation(server_url, recorder):
    recorder.requests.clear()
    photo = picture(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": a phone held upright
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", exif=exif.tobytes())
    files = [("image", ("phone.jpg", buf.getvalue(), "image/jpeg"))]
    data = {"prompt": "make it night", "seed": "1", "num_inference_steps": "2"}
    r = httpx.post(f"{server_url}/images/edits", files=files, data=data, timeout=60)
    assert r.status_code == 200, r.text
    assert recorder.requests[0].images[0].size == (24, 40)  # upright, as the camera meant it
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert out.size == (24, 40)


@pytest.mark.parametrize("files, data, param", [
    ([], {"prompt": "x"}, "image"),
    ([("image", ("a.png", b"not a picture", "image/png"))], {"prompt": "x"}, "image"),
    ([("image", ("a.png", png(picture(16, 16)), "image/png"))], {"prompt": "x", "size": "big"}, "size"),
    ([("image", ("a.png", png(picture(16, 16)), "image/png"))], {"prompt": "x", "n": "2"}, "n"),
    ([("image", ("a.png", png(picture(16, 16)), "image/png"))], {"prompt": "x", "seed": "abc"}, "seed"),
])
def test_images_api_bad_edit_input_is_a_400_in_openai_shape(server_url, files, data, param):
    if not files:  # still multipart, just without a picture
        files = [("unrelated", ("x.txt", b"hello", "text/plain"))]
    r = httpx.post(f"{server_url}/images/edits", files=files, data=data, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_images_api_bad_generation_input_is_a_4xx(server_url):
    r = httpx.post(f"{server_url}/images/generations", content=b"{not json", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{server_url}/images/generations", json={"prompt": "  "}, timeout=30)
    assert r.status_code == 400 and "prompt is empty" in r.json()["error"]["message"]
    r = httpx.post(f"{server_url}/images/generations", json={"prompt": "x", "num_inference_steps": 1},
                   timeout=30)
    assert r.status_code == 400 and "at least 2 steps" in r.json()["error"]["message"]


def test_backend_rejection_reaches_the_remote_user_as_bad_request(server_url):
    # One step is refused by the backend on the server; the message comes back intact.
    remote = RemoteBackend(base_url=server_url, timeout=30)
    remote._common_params = lambda request, size: {  # bypass local validation
        "model": "m", "n": 1, "response_format": "b64_json", "size": "32x32", "seed": 1,
        "num_inference_steps": 1, "true_cfg_scale": 4.0, "guidance_scale": 1.0,
        "negative_prompt": " "}
    with pytest.raises(BadRequest, match=r"HTTP 400.*at least 2 steps"):
        remote.generate(GenerateRequest("x"))


# -- failures -------------------------------------------------------------------------


def closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/v1"


def failing_app(status, body, *, plain=False, delay_s=0.0):
    app = FastAPI()

    async def answer():
        if delay_s:
            await asyncio.sleep(delay_s)
        if plain:
            return PlainTextResponse(body, status_code=status)
        return JSONResponse(body, status_code=status)

    app.post("/v1/images/edits")(answer)
    app.post("/v1/images/generations")(answer)
    return app


def test_connection_refused_says_nothing_is_listening():
    url = closed_port_url()
    remote = RemoteBackend(base_url=url, timeout=5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        remote.edit(EditRequest("x", images=(picture(16, 16),), seed=1))
    message = str(info.value)
    assert url in message
    assert "connection refused" in message
    assert "vllm serve" in message
    assert time.monotonic() - started < 5  # refused at once, no retries


def test_server_error_500_names_the_status_and_the_servers_words():
    app = failing_app(500, {"detail": "Image edit failed: CUDA out of memory"})
    with serve(app) as url:
        with pytest.raises(BackendError) as info:
            RemoteBackend(base_url=url, timeout=10).edit(EditRequest("x", images=(picture(16, 16),)))
    assert not isinstance(info.value, (BackendUnavailable, BadRequest))
    message = str(info.value)
    assert url in message and "HTTP 500" in message and "CUDA out of memory" in message
    assert "server's log" in message


def test_plain_text_500_is_still_readable():
    with serve(failing_app(502, "Bad Gateway", plain=True)) as url:
        with pytest.raises(BackendError, match=r"HTTP 502.*Bad Gateway"):
            RemoteBackend(base_url=url, timeout=10).generate(GenerateRequest("x"))


def test_timeout_says_how_long_it_waited():
    with serve(failing_app(200, {}, delay_s=3.0), graceful_s=0.5) as url:
        remote = RemoteBackend(base_url=url, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            remote.generate(GenerateRequest("x", seed=1))
        waited = time.monotonic() - started
    message = str(info.value)
    assert "did not answer within 0.5 s" in message and url in message
    assert "timeout" in message
    assert waited < 2.5


def test_client_error_4xx_is_a_bad_request_with_the_servers_words():
    app = failing_app(422, {"detail": "Field 'image' or 'url' is required"})
    with serve(app) as url:
        with pytest.raises(BadRequest) as info:
            RemoteBackend(base_url=url, timeout=10).edit(EditRequest("x", images=(picture(16, 16),)))
    message = str(info.value)
    assert "rejected the request (HTTP 422)" in message and "Field 'image' or 'url' is required" in message


def test_wrong_path_404_points_at_the_url():
    with serve(failing_app(500, {})) as url:
        base = url.removesuffix("/v1")  # forgot the /v1
        with pytest.raises(BackendUnavailable, match=r"HTTP 404.*ends in /v1"):
            RemoteBackend(base_url=base, timeout=10).generate(GenerateRequest("x"))


def test_bad_api_key_401_says_so():
    app = failing_app(401, {"error": {"message": "Invalid API key", "type": "auth"}})
    with serve(app) as url:
        with pytest.raises(BackendUnavailable, match=r"refused the API key.*Invalid API key"):
            RemoteBackend(base_url=url, timeout=10).generate(GenerateRequest("x"))


def test_answer_without_an_image_is_a_clear_error():
    with serve(failing_app(200, {"created": 0, "data": []})) as url:
        with pytest.raises(BackendError, match="answered without an image"):
            RemoteBackend(base_url=url, timeout=10).generate(GenerateRequest("x"))


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("QEC_REMOTE_URL", "http://gpu-box:9000/v1/")
    monkeypatch.setenv("QEC_REMOTE_MODEL", "Qwen/Qwen-Image-Edit-2509")
    remote = get_backend("remote")
    assert isinstance(remote, RemoteBackend)
    assert remote.base_url == "http://gpu-box:9000/v1"
    assert remote.model == "Qwen/Qwen-Image-Edit-2509"


def test_images_api_with_a_key_refuses_others_and_serves_the_remote_backend(recorder):
    with serve(create_app(recorder, api_key="s3cret")) as url:
        wrong = RemoteBackend(base_url=url, api_key="nope", timeout=60)
        with pytest.raises(BackendError, match="401|key"):
            wrong.generate(GenerateRequest("a fox", steps=2, width=64, height=64))
        right = RemoteBackend(base_url=url, api_key="s3cret", timeout=60)
        assert right.generate(GenerateRequest("a fox", steps=2, width=64, height=64)).image.size == (64, 64)
