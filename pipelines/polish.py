"""Prompt polishing: one self-contained instruction from a turn that leans on the chat.

Owns the three engines that rewrite a turn's words before they reach the image model,
the request and answer shapes, reading the rewriter's answer, and every fallback. In a
chat people write "now add rain", "make it bigger", "undo the hat but keep the rain";
the image model sees only the current words and pictures. A polisher reads this
turn's words, the branch's earlier instructions and the pictures, and returns one
instruction that stands alone (for a generation: a detailed prompt). The words it
sends the rewriter are ``pipelines.polish_prompt``'s.

Engines:
- ``off``: the user's words go through untouched (the default, and the tiny model's).
- ``local``: the edit pipeline's own text encoder, Qwen2.5-VL-7B-Instruct loaded as
  ``Qwen2_5_VLForConditionalGeneration``, generates the prompt with its language-model
  head, so no second model is loaded. ``QwenBackend.polisher()`` builds it.
- ``remote``: any OpenAI-compatible chat-completions endpoint that takes images
  (vLLM serving Qwen2.5-VL or Qwen3-VL, for instance).

Never in the way: an answer that does not parse, is empty, too long, holds control
characters or drops the user's quoted text, a timeout, an unreachable endpoint, a
failed local run, or a text encoder with no trained head all fall back to the user's
words with a reason in plain words (``Polished.polished`` is False). Only a cancel
raises (``pipelines.base.Cancelled``): polishing runs inside the job, so Stop stops it.

Knows nothing of the chat, sessions or chainlit: PIL images and strings in,
``Polished`` out.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from . import polish_prompt
from .base import Cancelled, to_rgb

log = logging.getLogger(__name__)

ENGINES = ("off", "local", "remote")

# The pipelines read at most 1024 prompt tokens; a rewrite past this many characters
# is a rambling or runaway answer, not an instruction.
MAX_PROMPT_CHARS = 1500
# About 150 words of prompt and the JSON around it.
MAX_NEW_TOKENS = 300
# Pictures the local rewriter looks at are cut to about this many pixels (~330 vision
# tokens each): enough to name what is in them, cheap to prefill.
LOCAL_IMAGE_AREA = 512 * 512
REMOTE_TIMEOUT_S = 20.0
# How often a waiting polisher looks at the cancel flag.
POLL_S = 0.05

UNUSABLE = "the rewriter's answer was not usable"
NO_HEAD = "the text encoder has no language-model head"


@dataclass(frozen=True)
class PolishRequest:
    instruction: str  # this turn's words
    history: tuple[str, ...] = ()  # earlier instructions on this branch, oldest first
    images: tuple = ()  # PIL images: the current picture first, then references; () for a generation
    op: str = "edit"  # "edit" | "generate"


@dataclass(frozen=True)
class Polished:
    prompt: str  # what goes to the image model (the user's words on fallback)
    polished: bool  # False: fell back (or the engine is off)
    reason: str = ""  # why it fell back, in words for the user; "" when polished or off
    engine: str = "off"
    elapsed_s: float = 0.0


def polish(engine_impl, request: PolishRequest, *, cancel: Optional[threading.Event] = None) -> Polished:
    """Polish ``request`` with ``engine_impl`` (``None`` means off)."""
    return (engine_impl or OffPolisher()).polish(request, cancel=cancel)


def make_polisher(engine: str, *, backend=None, url: Optional[str] = None,
                  model: Optional[str] = None, api_key: str = "EMPTY",
                  timeout: float = REMOTE_TIMEOUT_S):
    """The polisher for a setting. ``local`` asks ``backend.polisher()`` (qwen or tiny),
    which loads the edit pipeline if it is not loaded yet. Bad settings raise ValueError."""
    if engine not in ENGINES:
        raise ValueError(f"Unknown polish engine {engine!r}. Choose one of: {', '.join(ENGINES)}.")
    if engine == "off":
        return OffPolisher()
    if engine == "local":
        if backend is None or not hasattr(backend, "polisher"):
            name = getattr(backend, "name", None)
            raise ValueError(
                "The local polisher uses the qwen backend's own text encoder"
                + (f"; the {name!r} backend has none." if name else ".")
                + " Use polish engine 'remote' or 'off'.")
        return backend.polisher()
    if not url or not model:
        raise ValueError("The remote polisher needs a url (like http://127.0.0.1:8000/v1) and a model name.")
    return RemotePolisher(url, model, api_key=api_key, timeout=timeout)


# ----- reading the answer -------------------------------------------------------------


def parse_answer(text: str, *, limit: int = MAX_PROMPT_CHARS) -> Optional[str]:
    """The prompt in a rewriter's answer, or None when the answer is unusable.

    Wants a JSON object with a string ``"prompt"``; tolerates a ```json fence and
    chatter before or after it (the last object with a ``prompt`` wins, so a model
    that thinks aloud first is read right). Unusable: no such object, an empty prompt,
    one longer than ``limit`` characters, or one holding control characters (or the
    U+FFFD of undecodable bytes).
    """
    if not isinstance(text, str):
        return None
    decoder = json.JSONDecoder()
    found = None
    start = text.find("{")
    while start != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict) and "prompt" in obj:
            found = obj["prompt"]
        start = text.find("{", end)
    if not isinstance(found, str):
        return None
    prompt = found.strip()
    if not prompt or len(prompt) > limit:
        return None
    if any(_is_control(ch) for ch in prompt):
        return None
    return prompt


def _is_control(ch: str) -> bool:
    return ch == "\ufffd" or (unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\n\t")


# Quotation marks whose contents the rewriter must copy exactly (straight single quotes
# are left out: they are apostrophes as often as quotes).
_QUOTES = {'"': '"', "\u201c": "\u201d", "\u00ab": "\u00bb", "\u300c": "\u300d",
           "\u300e": "\u300f", "\u201e": "\u201c"}


def quoted_spans(text: str) -> list[str]:
    """The non-empty spans inside quotation marks in ``text``."""
    spans, i = [], 0
    while i < len(text):
        close = _QUOTES.get(text[i])
        if close is not None:
            j = text.find(close, i + 1)
            if j > i + 1:
                spans.append(text[i + 1:j])
                i = j + 1
                continue
        i += 1
    return spans


def check_answer(text: str, request: PolishRequest) -> tuple[Optional[str], str]:
    """``(prompt, "")`` when the answer is usable for ``request``, else ``(None, reason)``."""
    prompt = parse_answer(text)
    if prompt is None:
        return None, UNUSABLE
    for span in quoted_spans(request.instruction):
        if span not in prompt:
            return None, f"the rewriter changed the quoted text \u201c{span}\u201d"
    return prompt, ""


# ----- what the rewriter is shown -------------------------------------------------------


def messages(request: PolishRequest) -> list[dict]:
    """The chat for the rewriter: our system prompt, then one user turn with each
    picture (as ``{"type": "image", "index": i}``) under its name, then the text."""
    pictures = len(request.images) if request.op != "generate" else 0
    content: list[dict] = []
    for index in range(pictures):
        role = "the picture to edit" if index == 0 else "a reference"
        label = f"Picture {index + 1} ({role}): "
        content.append({"type": "text", "text": label if index == 0 else "\n" + label})
        content.append({"type": "image", "index": index})
    text = polish_prompt.user_text(request.instruction, request.history, op=request.op)
    content.append({"type": "text", "text": "\n" + text if pictures else text})
    return [
        {"role": "system", "content": polish_prompt.system_prompt(request.op)},
        {"role": "user", "content": content},
    ]


def image_data_url(img: Image.Image, max_side: int = 1024) -> str:
    """``img`` as a data URL, its longer side cut to ``max_side``: PNG when it has
    transparency (kept), else JPEG."""
    transparent = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA") if transparent else to_rgb(img)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.LANCZOS)
    buffer = io.BytesIO()
    if transparent:
        img.save(buffer, format="PNG", optimize=False)
        kind = "png"
    else:
        img.save(buffer, format="JPEG", quality=90)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


# ----- the engines ------------------------------------------------------------------------


class OffPolisher:
    """The user's words, untouched."""

    engine = "off"

    def polish(self, request: PolishRequest, *, cancel: Optional[threading.Event] = None) -> Polished:
        _raise_if_cancelled(cancel)
        return Polished(prompt=request.instruction, polished=False, engine=self.engine)


class _Polisher:
    engine = "off"

    def _fallback(self, request, reason: str, started: float) -> Polished:
        log.info("polish (%s) fell back: %s", self.engine, reason)
        return Polished(prompt=request.instruction, polished=False, reason=reason,
                        engine=self.engine, elapsed_s=time.perf_counter() - started)

    def _answer(self, request, text: str, started: float) -> Polished:
        prompt, reason = check_answer(text, request)
        if prompt is None:
            log.info("unusable rewriter answer: %.300r", text)
            return self._fallback(request, reason, started)
        return Polished(prompt=prompt, polished=True, engine=self.engine,
                        elapsed_s=time.perf_counter() - started)


class LocalPolisher(_Polisher):
    """Generates the prompt with a loaded ``Qwen2_5_VLForConditionalGeneration``.

    ``model`` and ``processor`` are the edit pipeline's ``text_encoder`` and
    ``processor`` (Qwen2-VL, ours is image-only). Greedy ``generate()`` under
    ``torch.inference_mode()``, inputs on ``device`` (default: where the model's first
    weight is; the qwen backend passes its device, where offload hooks run the model).
    Nothing about the model is changed: not its mode, dtype or placement. Under the
    ``model-offload`` profile the text encoder's hook moves it to the GPU for the run
    and, as after the pipeline's own prompt encoding, it stays there until the
    transformer's hook moves it out.

    ``lock`` (the qwen backend's one-call-at-a-time lock) is held while generating and
    waited for in slices, so Stop works while another job runs; ``threads`` sets torch's
    CPU threads for the run, as the backend does for its own calls.

    The head check (``head_problem``): a model without ``lm_head`` cannot generate. A
    checkpoint without ``lm_head.weight`` still loads (transformers makes up a random
    head and only warns), so unless the head is tied to the embeddings the checkpoint
    folder (``checkpoint``, else the model's ``name_or_path``) is read:
    ``model.safetensors.index.json``'s weight map, or ``model.safetensors``' header.
    When neither is there (another format), the head is taken as loaded.
    """

    engine = "local"

    def __init__(self, model, processor, *, max_new_tokens: int = MAX_NEW_TOKENS,
                 device=None, checkpoint=None, lock: Optional[threading.Lock] = None,
                 threads: Optional[int] = None, image_area: int = LOCAL_IMAGE_AREA):
        self.model = model
        self.processor = processor
        self.max_new_tokens = int(max_new_tokens)
        self.device = device
        self.checkpoint = checkpoint
        self.lock = lock
        self.threads = threads
        self.image_area = int(image_area)
        self._head_problem: Optional[str] = None
        self._head_checked = False

    def head_problem(self) -> Optional[str]:
        """Why this model cannot write text (``NO_HEAD``), or None."""
        if not self._head_checked:
            self._head_problem = lm_head_problem(self.model, self.checkpoint)
            self._head_checked = True
        return self._head_problem

    def polish(self, request: PolishRequest, *, cancel: Optional[threading.Event] = None) -> Polished:
        started = time.perf_counter()
        _raise_if_cancelled(cancel)
        problem = self.head_problem()
        if problem:
            return self._fallback(request, problem, started)
        try:
            with _held(self.lock, cancel), _torch_threads(self.threads):
                text = self._generate(request, cancel)
        except Cancelled:
            raise
        except Exception as exc:  # a failed rewrite must never cost the edit
            log.exception("local polish failed")
            _free_cuda_cache(exc)
            return self._fallback(request, f"the rewriter failed: {_short(exc)}", started)
        return self._answer(request, text, started)

    def _generate(self, request: PolishRequest, cancel) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class StopOnCancel(StoppingCriteria):
            fired = False

            def __call__(self, input_ids, scores, **kwargs):
                self.fired = self.fired or (cancel is not None and cancel.is_set())
                return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool,
                                  device=input_ids.device)

        chat = messages(request)
        images = [_fit_area(to_rgb(request.images[part["index"]]), self.image_area)
                  for part in chat[1]["content"] if part["type"] == "image"]
        inputs = self.processor(text=[self._render(chat)], images=images or None,
                                return_tensors="pt")
        inputs = inputs.to(self._device())
        stop = StopOnCancel()
        tokenizer = self.processor.tokenizer
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                # A generation_config.json may ask for sampling (Qwen2.5-VL-7B-Instruct's
                # does): greedy decoding needs its settings unset, or transformers warns.
                temperature=None, top_p=None, top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([stop]),
            )
        if stop.fired:
            raise Cancelled()
        return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def _render(self, chat: list[dict]) -> str:
        """The chat as text: the processor's chat template when it has one, else the
        same ChatML that Qwen2-VL's template writes."""
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        parts = []
        for message in chat:
            content = message["content"]
            if not isinstance(content, str):
                content = "".join("<|vision_start|><|image_pad|><|vision_end|>"
                                  if part["type"] == "image" else part["text"] for part in content)
            parts.append(f"<|im_start|>{message['role']}\n{content}<|im_end|>\n")
        return "".join(parts) + "<|im_start|>assistant\n"

    def _device(self):
        if self.device is not None:
            return self.device
        return next(self.model.parameters()).device


def lm_head_problem(model, checkpoint=None) -> Optional[str]:
    """``NO_HEAD`` when ``model`` has no trained language-model head, else None (see
    ``LocalPolisher``)."""
    head = getattr(model, "lm_head", None)
    weight = getattr(head, "weight", None)
    if weight is None or getattr(weight, "is_meta", False):
        return NO_HEAD
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embeddings is not None and getattr(embeddings, "weight", None) is weight:
        return None  # tied: the head is the trained embedding matrix
    names = checkpoint_tensor_names(checkpoint or getattr(model, "name_or_path", None))
    if names is not None and "lm_head.weight" not in names:
        return NO_HEAD
    return None


def checkpoint_tensor_names(folder) -> Optional[set]:
    """The tensor names saved in a transformers checkpoint folder (safetensors only:
    the sharded index or the single file's header), or None when it cannot tell."""
    if not folder:
        return None
    path = Path(str(folder)).expanduser()
    index = path / "model.safetensors.index.json"
    single = path / "model.safetensors"
    try:
        if index.is_file():
            return set(json.loads(index.read_text())["weight_map"])
        if single.is_file():
            from safetensors import safe_open

            with safe_open(str(single), "pt") as f:
                return set(f.keys())
    except (OSError, ValueError, KeyError) as exc:
        log.warning("could not read the checkpoint's tensor names in %s: %s", path, exc)
    return None


class RemotePolisher(_Polisher):
    """An OpenAI-compatible ``POST {url}/chat/completions`` that takes images.

    ``url`` is the API base (``http://127.0.0.1:8000/v1``; a full
    ``.../chat/completions`` also works). Sends our system prompt and one user turn:
    the pictures as ``image_url`` data URLs under their names, then the text with the
    history and the message; greedy-ish (temperature 0.2), ``response_format``
    ``json_object`` (a server that answers 400 or 422 to that gets the request once
    more without it). ``timeout`` bounds the whole exchange, connect and read; the
    request runs in a worker thread while this one watches ``cancel`` every 50 ms,
    so Stop returns at once. A cut-off request is left to its own timeout in the
    background and its answer dropped. One HTTP client (and its connections) serves
    every polish of this object: keep it for the app's life, ``close()`` at the end.
    """

    engine = "remote"

    def __init__(self, url: str, model: str, api_key: str = "EMPTY",
                 timeout: float = REMOTE_TIMEOUT_S, *, max_tokens: int = MAX_NEW_TOKENS + 100,
                 temperature: float = 0.2, max_side: int = 1024):
        base = str(url).rstrip("/")
        self.endpoint = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.url = str(url)
        self.model = model
        self.api_key = api_key or "EMPTY"
        self.timeout = float(timeout)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.max_side = int(max_side)
        self._client = None  # one httpx client, made on first use (making one costs ~30 ms)
        self._client_lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP client (a later polish makes a new one)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _http(self):
        import httpx

        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=httpx.Timeout(self.timeout))
            return self._client

    def body(self, request: PolishRequest) -> dict:
        """The JSON body sent for ``request``."""
        chat = messages(request)
        for message in chat:
            if isinstance(message["content"], list):
                message["content"] = [
                    {"type": "image_url", "image_url": {"url": image_data_url(
                        request.images[part["index"]], self.max_side)}}
                    if part["type"] == "image" else part
                    for part in message["content"]
                ]
        return {
            "model": self.model,
            "messages": chat,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {"type": "json_object"},
        }

    def polish(self, request: PolishRequest, *, cancel: Optional[threading.Event] = None) -> Polished:
        started = time.perf_counter()
        _raise_if_cancelled(cancel)
        try:
            body = self.body(request)
        except Exception as exc:  # a picture that will not encode, say
            log.exception("building the rewriter's request failed")
            return self._fallback(request, f"the rewriter failed: {_short(exc)}", started)
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def exchange():
            try:
                outcome["response"] = self._exchange(body)
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=exchange, name="polish-remote", daemon=True).start()
        deadline = started + self.timeout
        while not done.wait(POLL_S):
            _raise_if_cancelled(cancel)
            if time.perf_counter() >= deadline:
                return self._fallback(request, self._timed_out(), started)
        _raise_if_cancelled(cancel)
        error = outcome.get("error")
        if error is not None:
            return self._fallback(request, self._explain(error), started)
        status, payload = outcome["response"]
        if not 200 <= status < 300:
            return self._fallback(request, f"the rewriter at {self.url} answered HTTP {status}", started)
        return self._answer(request, _content(payload), started)

    def _exchange(self, body: dict):
        client = self._http()  # thread-safe: a cut-off request may still be using it
        headers = {"Authorization": f"Bearer {self.api_key}"}
        response = client.post(self.endpoint, json=body, headers=headers)
        if response.status_code in (400, 422):
            log.info("the rewriter refused response_format (HTTP %d); asking again without it",
                     response.status_code)
            body = {k: v for k, v in body.items() if k != "response_format"}
            response = client.post(self.endpoint, json=body, headers=headers)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return response.status_code, payload

    def _timed_out(self) -> str:
        return f"timed out after {self.timeout:g} s"

    def _explain(self, error: BaseException) -> str:
        import httpx

        if isinstance(error, httpx.TimeoutException):
            return self._timed_out()
        if isinstance(error, (httpx.TransportError, OSError)):
            return f"could not reach {self.url}: {_short(error) or type(error).__name__}"
        log.error("remote polish failed: %r", error)
        return f"the rewriter failed: {_short(error)}"


def _content(payload) -> Optional[str]:
    """The assistant's text in a chat-completions answer (a string or text parts)."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else None


# ----- helpers ------------------------------------------------------------------------


def _raise_if_cancelled(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


@contextmanager
def _held(lock, cancel):
    """Hold ``lock``, waiting for it in slices so a cancel is seen while waiting."""
    if lock is None:
        yield
        return
    while not lock.acquire(timeout=POLL_S):
        _raise_if_cancelled(cancel)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _torch_threads(count: Optional[int]):
    """torch's intra-op CPU threads set to ``count`` for the block (process-wide, so
    only under the backend's lock)."""
    import torch

    old = torch.get_num_threads()
    if not count or count == old:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _fit_area(img: Image.Image, area: int) -> Image.Image:
    width, height = img.size
    if width * height <= area:
        return img
    scale = (area / (width * height)) ** 0.5
    return img.resize((max(28, round(width * scale)), max(28, round(height * scale))), Image.LANCZOS)


def _free_cuda_cache(exc: BaseException) -> None:
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - clean-up only
        pass


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "ENGINES", "MAX_PROMPT_CHARS", "PolishRequest", "Polished", "Cancelled",
    "OffPolisher", "LocalPolisher", "RemotePolisher", "polish", "make_polisher",
    "parse_answer", "check_answer", "quoted_spans", "image_data_url", "messages",
    "lm_head_problem",
]
