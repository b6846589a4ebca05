"""Prompt polishing: the local engine on the tiny model's real text encoder, the remote
engine against a fake OpenAI-compatible server on 127.0.0.1, reading answers, and
every fallback (which must hand back the user's own words with a reason)."""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from pipelines.base import Cancelled
from pipelines.polish import (
    ENGINES,
    MAX_PROMPT_CHARS,
    NO_HEAD,
    UNUSABLE,
    LocalPolisher,
    OffPolisher,
    Polished,
    PolishRequest,
    RemotePolisher,
    check_answer,
    image_data_url,
    lm_head_problem,
    make_polisher,
    parse_answer,
    polish,
    quoted_spans,
)
from pipelines.polish_prompt import SYSTEM_EDIT, SYSTEM_GENERATE, user_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from fake_chat_server import FakeChatServer  # noqa: E402

pytestmark = pytest.mark.timeout(120)

RAIN = "Add heavy rain falling across the whole scene; keep everything else unchanged."


@pytest.fixture(scope="module")
def picture():
    return Image.new("RGB", (640, 480), (90, 140, 200))


# ----- local: the tiny model's real text encoder --------------------------------------


def spy_generate(monkeypatch, model, before=None):
    calls = []
    original = model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs)
        if before is not None:
            before()
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    return calls


def test_local_runs_real_generate_on_the_tiny_text_encoder_and_falls_back(tiny, picture, monkeypatch):
    polisher = tiny.polisher()
    model = polisher.model
    assert model is tiny._edit_pipeline().text_encoder  # no second model
    assert polisher.head_problem() is None  # the tiny checkpoint has lm_head.weight
    weight = model.lm_head.weight
    before = (model.training, weight.device, weight.dtype, torch.is_grad_enabled(),
              torch.get_num_threads())
    calls = spy_generate(monkeypatch, model)

    result = polisher.polish(PolishRequest("make it darker", history=("add rain",), images=(picture,)))

    assert len(calls) == 1
    assert calls[0]["do_sample"] is False and calls[0]["max_new_tokens"] == polisher.max_new_tokens
    assert calls[0]["pixel_values"] is not None  # the picture reached the vision tower
    # Random weights write gibberish: never used, the user's words go through.
    assert isinstance(result, Polished)
    assert result.polished is False
    assert result.prompt == "make it darker"
    assert result.reason == UNUSABLE
    assert result.engine == "local" and result.elapsed_s > 0
    after = (model.training, model.lm_head.weight.device, model.lm_head.weight.dtype,
             torch.is_grad_enabled(), torch.get_num_threads())
    assert after == before


def test_local_generation_prompt_has_no_pictures(tiny, monkeypatch):
    polisher = tiny.polisher()
    calls = spy_generate(monkeypatch, polisher.model)
    result = polish(polisher, PolishRequest("a red fox in the snow", op="generate"))
    assert calls and calls[0].get("pixel_values") is None
    assert result.prompt == "a red fox in the snow" and not result.polished


def test_local_stop_during_generate_raises_cancelled(tiny, picture, monkeypatch):
    polisher = tiny.polisher()
    cancel = threading.Event()
    spy_generate(monkeypatch, polisher.model, before=cancel.set)  # Stop pressed as it starts
    with pytest.raises(Cancelled):
        polisher.polish(PolishRequest("make it darker", images=(picture,)), cancel=cancel)
    with pytest.raises(Cancelled):  # set before the call: nothing runs
        polisher.polish(PolishRequest("make it darker", images=(picture,)), cancel=cancel)


def test_local_reads_a_good_answer(tiny, picture):
    """The decode-and-read path, with a stand-in model that "writes" a good answer."""
    processor = tiny._edit_pipeline().processor
    answer = processor.tokenizer(json.dumps({"prompt": RAIN}), return_tensors="pt")["input_ids"]

    class Writer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm_head = torch.nn.Linear(2, 2)
            self.seen = None

        def generate(self, input_ids, **kwargs):
            self.seen = kwargs
            return torch.cat([input_ids, answer], dim=1)

    writer = Writer()
    result = LocalPolisher(writer, processor).polish(
        PolishRequest("now add rain", history=("make it night",), images=(picture,)))
    assert result == Polished(RAIN, True, "", "local", result.elapsed_s)


# Qwen2-VL's published chat template (processor/chat_template.jinja of the Qwen-Image-Edit
# repos); the tiny processor has none, so ``_render`` writes the same ChatML itself.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_the_chat_is_rendered_as_qwen2_vl_s_template_renders_it(tiny, picture):
    from pipelines.polish import messages
    from pipelines.tiny_model import _build_processor, _build_tokenizer

    chat = messages(PolishRequest("now add rain", ("make it night",), (picture, picture)))
    processor = _build_processor(_build_tokenizer())
    assert not getattr(processor, "chat_template", None)
    ours = LocalPolisher(None, processor)._render(chat)
    processor.chat_template = QWEN2_VL_CHAT_TEMPLATE
    assert LocalPolisher(None, processor)._render(chat) == ours
    assert ours.startswith("<|im_start|>system\n" + SYSTEM_EDIT + "<|im_end|>\n<|im_start|>user\n")
    assert ours.count("<|image_pad|>") == 2 and ours.endswith("<|im_start|>assistant\n")


def test_a_checkpoint_without_a_head_falls_back_without_generating(tiny, tmp_path, picture, monkeypatch):
    model = tiny._edit_pipeline().text_encoder
    assert lm_head_problem(model) is None  # its own folder holds lm_head.weight
    # A sharded index like the published one, minus the head: loaded, the head would be random.
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00001.safetensors"}}))
    polisher = LocalPolisher(model, tiny._edit_pipeline().processor, checkpoint=tmp_path)
    calls = spy_generate(monkeypatch, model)
    result = polisher.polish(PolishRequest("make it darker", images=(picture,)))
    assert (result.polished, result.prompt, result.reason) == (False, "make it darker", NO_HEAD)
    assert calls == []
    assert NO_HEAD == "the text encoder has no language-model head"

    class Headless(torch.nn.Module):
        pass

    assert lm_head_problem(Headless()) == NO_HEAD


# ----- remote: a fake OpenAI-compatible server -----------------------------------------


def test_remote_sends_the_chat_and_uses_the_answer(picture):
    reference = Image.new("RGBA", (300, 200), (255, 0, 0, 128))
    with FakeChatServer(answer={"prompt": RAIN}) as server:
        polisher = RemotePolisher(server.url, "Qwen/Qwen2.5-VL-7B-Instruct", api_key="sk-test", timeout=5)
        result = polisher.polish(PolishRequest(
            "now add rain", history=("make it night", "add a red hat"), images=(picture, reference)))
    assert result.polished is True and result.prompt == RAIN
    assert result.engine == "remote" and result.reason == ""

    (sent,) = server.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    body = sent["body"]
    assert body["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert body["response_format"] == {"type": "json_object"}
    assert 0 <= body["temperature"] <= 0.3 and body["max_tokens"] > 0
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_EDIT}
    assert user["role"] == "user"
    images = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    assert images[0].startswith("data:image/jpeg;base64,")
    assert images[1].startswith("data:image/png;base64,")  # transparency kept
    decoded = Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1])))
    assert decoded.size == picture.size
    text = "".join(p["text"] for p in user["content"] if p["type"] == "text")
    assert "1. make it night" in text and "2. add a red hat" in text
    assert "<message>now add rain</message>" in text
    assert text.index("Picture 1") < text.index("Picture 2") < text.index("<message>")


def test_remote_generation_sends_the_generation_prompt_and_no_pictures():
    with FakeChatServer(answer='```json\n{"prompt": "A red fox in fresh snow at dusk."}\n```') as server:
        result = RemotePolisher(server.url, "m", timeout=5).polish(
            PolishRequest("a red fox in the snow", op="generate"))
    assert result.polished and result.prompt == "A red fox in fresh snow at dusk."
    body = server.requests[0]["body"]
    assert body["messages"][0]["content"] == SYSTEM_GENERATE
    assert all(p["type"] == "text" for p in body["messages"][1]["content"])
    assert server.requests[0]["headers"]["authorization"] == "Bearer EMPTY"


def test_remote_asks_again_without_response_format_when_refused(picture):
    with FakeChatServer(answer={"prompt": RAIN}, reject_response_format=True) as server:
        result = RemotePolisher(server.url + "/", "m", timeout=5).polish(
            PolishRequest("now add rain", images=(picture,)))
    assert result.polished and result.prompt == RAIN
    first, second = (r["body"] for r in server.requests)
    assert "response_format" in first and "response_format" not in second
    assert first["messages"] == second["messages"]


def test_a_slow_server_is_cut_off_at_the_timeout(picture):
    with FakeChatServer(answer={"prompt": RAIN}, delay=10) as server:
        polisher = RemotePolisher(server.url, "m", timeout=1)
        started = time.perf_counter()
        result = polisher.polish(PolishRequest("now add rain", images=(picture,)))
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0
    assert (result.polished, result.prompt, result.reason) == (False, "now add rain", "timed out after 1 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_falls_back():
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.perf_counter()
    result = RemotePolisher(url, "m", timeout=5).polish(PolishRequest("now add rain"))
    assert time.perf_counter() - started < 5
    assert not result.polished and result.prompt == "now add rain"
    assert result.reason.startswith(f"could not reach {url}: ")


@pytest.mark.parametrize("answer, status, reason", [
    ("Sure! I would add some rain.", 200, UNUSABLE),
    ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, 200, UNUSABLE),
    ({"prompt": "   "}, 200, UNUSABLE),
    ({"rewritten": RAIN}, 200, UNUSABLE),
    ({"prompt": RAIN}, 500, "answered HTTP 500"),
    ({"prompt": RAIN}, 401, "answered HTTP 401"),
], ids=["chatter", "too-long", "empty", "no-prompt-key", "http-500", "http-401"])
def test_bad_answers_fall_back_to_the_users_words(answer, status, reason, picture):
    with FakeChatServer(answer=answer, status=status) as server:
        result = RemotePolisher(server.url, "m", timeout=5).polish(
            PolishRequest("now add rain", images=(picture,)))
    assert not result.polished and result.prompt == "now add rain"
    assert reason in result.reason


def test_a_rewrite_that_changes_quoted_text_falls_back():
    instruction = 'change the sign to say "Grand Opening!"'
    with FakeChatServer(answer={"prompt": 'Change the sign text to "GRAND OPENING"'}) as server:
        result = RemotePolisher(server.url, "m", timeout=5).polish(PolishRequest(instruction))
    assert not result.polished and result.prompt == instruction
    assert "quoted text" in result.reason and "Grand Opening!" in result.reason


def test_stop_during_a_slow_request_raises_cancelled_at_once(picture):
    cancel = threading.Event()
    with FakeChatServer(answer={"prompt": RAIN}, delay=10) as server:
        polisher = RemotePolisher(server.url, "m", timeout=10)
        threading.Timer(0.3, cancel.set).start()
        started = time.perf_counter()
        with pytest.raises(Cancelled):
            polisher.polish(PolishRequest("now add rain", images=(picture,)), cancel=cancel)
        assert time.perf_counter() - started < 1.3
        with pytest.raises(Cancelled):  # already stopped: nothing is sent
            polisher.polish(PolishRequest("now add rain"), cancel=cancel)
    assert len(server.requests) == 1


# ----- off, settings, pieces ------------------------------------------------------------------


def test_off_passes_the_words_through():
    result = OffPolisher().polish(PolishRequest("make it darker", history=("add rain",)))
    assert result == Polished("make it darker", False, "", "off", 0.0)
    assert polish(None, PolishRequest("x")).prompt == "x"
    with pytest.raises(Cancelled):
        OffPolisher().polish(PolishRequest("x"), cancel=_set_event())


def _set_event():
    event = threading.Event()
    event.set()
    return event


def test_make_polisher_checks_its_settings(tiny):
    assert ENGINES == ("off", "local", "remote")
    assert isinstance(make_polisher("off"), OffPolisher)
    assert isinstance(make_polisher("local", backend=tiny), LocalPolisher)
    remote = make_polisher("remote", url="http://h:8000/v1", model="m", api_key="k", timeout=3)
    assert (remote.endpoint, remote.model, remote.api_key, remote.timeout) == (
        "http://h:8000/v1/chat/completions", "m", "k", 3.0)
    for bad in (dict(engine="loud"), dict(engine="remote", url="http://h/v1"),
                dict(engine="local", backend=object())):
        with pytest.raises(ValueError):
            make_polisher(**bad)


GOOD = 'Add rain to the street; keep the people unchanged.'


@pytest.mark.parametrize("text, expected", [
    (json.dumps({"prompt": GOOD}), GOOD),
    ('{"prompt": "  padded  "}', "padded"),
    ('```json\n{"prompt": "fenced"}\n```', "fenced"),
    ('Here is the rewrite:\n{"prompt": "after chatter"} Hope that helps!', "after chatter"),
    ('<think>maybe {"prompt": "draft"}?</think>\n{"prompt": "final"}', "final"),
    ('{"prompt": "Hängeschild mit „Bäckerei“ 看板"}', "Hängeschild mit „Bäckerei“ 看板"),
    ('{"prompt": "two\\nlines"}', "two\nlines"),
    ('{"prompt": "x", "notes": "ignored"}', "x"),
    ("", None),
    ("just words", None),
    ('{"prompt": ', None),
    ('{"prompt": ""}', None),
    ('{"prompt": "   "}', None),
    ('{"prompt": null}', None),
    ('{"prompt": ["a"]}', None),
    ('{"text": "no prompt key"}', None),
    ('["prompt"]', None),
    ('"a bare string"', None),
    ('{"prompt": "bell\\u0007"}', None),
    ('{"prompt": "nul\\u0000"}', None),
    ('{"prompt": "bad bytes \\ufffd"}', None),
    (json.dumps({"prompt": "x" * MAX_PROMPT_CHARS}), "x" * MAX_PROMPT_CHARS),
    (json.dumps({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}), None),
    (None, None),
])
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


def test_parse_answer_limit():
    assert parse_answer('{"prompt": "abcdef"}', limit=5) is None
    assert parse_answer('{"prompt": "abcde"}', limit=5) == "abcde"


def test_quoted_spans_and_the_quote_check():
    assert quoted_spans('sign says "OPEN" and “Café Noir”, not 5\' tall') == ["OPEN", "Café Noir"]
    assert quoted_spans("«Bonjour» and 「こんにちは」") == ["Bonjour", "こんにちは"]
    assert quoted_spans('a lone " mark') == []
    request = PolishRequest('write "Café Noir" on the awning')
    assert check_answer('{"prompt": "Write \\"Café Noir\\" on the awning."}', request) == (
        'Write "Café Noir" on the awning.', "")
    prompt, reason = check_answer('{"prompt": "Write \\"Cafe Noir\\" on the awning."}', request)
    assert prompt is None and "Café Noir" in reason


def test_user_text_keeps_the_last_few_instructions_in_order():
    history = tuple(f"step {n}" for n in range(1, 10)) + ("  ", "x" * 400)
    text = user_text("same but at night", history)
    assert "step 1\n" not in text and "1. step 5" in text and "5. step 9" in text
    assert "6. " + "x" * 299 + "…" in text
    assert text.endswith("<message>same but at night</message>")
    assert "none" in user_text("a fox", (), op="generate")


def test_image_data_url_downscales(picture):
    url = image_data_url(Image.new("RGB", (4000, 1000)), max_side=1024)
    head, data = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (1024, 256)
    assert image_data_url(picture).startswith("data:image/jpeg;base64,")
    assert image_data_url(Image.new("LA", (10, 10))).startswith("data:image/png;base64,")
