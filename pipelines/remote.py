"""The `remote` backend: Qwen-Image-Edit on an OpenAI-compatible images server.

Owns turning a request into one `images.edit` / `images.generate` call through the
`openai` package, and turning every way that call can fail into a message a user can
act on. Knows nothing of torch or diffusers: the server (vLLM-Omni, or our own
`pipelines.images_api` serving any local backend) runs the model.

The wire format is vLLM-Omni's (docs/serving/image_edit_api.md and
vllm_omni/entrypoints/openai/api_server.py in vllm-project/vllm-omni):
- edits: multipart `POST /v1/images/edits` with the pictures as `image[]` parts in
  order (Picture 1, 2, 3), `prompt`, `model`, `n`, `size` ("WxH"),
  `response_format="b64_json"`;
- generations: JSON `POST /v1/images/generations` with the same fields, no images;
- diffusion controls as extra top-level fields (the SDK's `extra_body`):
  `seed`, `num_inference_steps`, `true_cfg_scale`, `guidance_scale`,
  `negative_prompt`.

Sizes follow `pipelines.sizes`, as the local backends do: an edit asks the server for
Picture 1's VAE grid (about 1 MP) unless a size is asked, a generation for the model's
default size, and the answer is resized back to Picture 1's (or the asked) size.

Limits worth knowing:
- A remote run cannot be interrupted: `cancel` is checked before sending and after
  the answer arrives, so a cancelled run still costs the server its full time.
- Progress is only start (0/1) and end (1/1); the API streams no steps.
- vLLM-Omni's edit endpoint treats seed 0 as "no seed" (`seed or random...`), so
  seeds drawn here start at 1.
"""

from __future__ import annotations

import base64
import io
import os
import random
import threading
import time
from typing import Any, Optional

from PIL import Image

from . import sizes as size_math
from .base import (
    MAX_INPUT_IMAGES,
    BackendError,
    BackendUnavailable,
    BadRequest,
    Cancelled,
    Capabilities,
    EditRequest,
    GenerateRequest,
    ProgressFn,
    Result,
    to_rgb,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8091/v1"
DEFAULT_MODEL = "Qwen/Qwen-Image-Edit-2511"
# The model card's recommended settings for Qwen-Image-Edit-2509/2511. Sent
# explicitly so the recorded recipe does not depend on the server's defaults.
DEFAULT_STEPS = 40
DEFAULT_TRUE_CFG_SCALE = 4.0
DEFAULT_GUIDANCE_SCALE = 1.0
# True CFG is off without a negative prompt; a single space keeps it on.
DEFAULT_NEGATIVE_PROMPT = " "


class RemoteBackend:
    """Qwen-Image-Edit behind an OpenAI-compatible images API."""

    name = "remote"

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        model: Optional[str] = None,
        timeout: float = 600.0,
        max_input_images: int = MAX_INPUT_IMAGES,
    ) -> None:
        self.base_url = (base_url or os.environ.get("QEC_REMOTE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("QEC_REMOTE_API_KEY") or "EMPTY"
        self.model = model or os.environ.get("QEC_REMOTE_MODEL") or DEFAULT_MODEL
        self.timeout = float(timeout)
        self.capabilities = Capabilities(max_input_images=max_input_images, text_to_image=True)
        self._client = None

    # -- the protocol ---------------------------------------------------------

    def generate(
        self,
        request: GenerateRequest,
        *,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        plan = _plan(size_math.plan_generate, request.width, request.height)
        sent = self._common_params(request, plan.generate)
        return self._run("generate", request, sent, plan.output, progress, cancel)

    def edit(
        self,
        request: EditRequest,
        *,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        if len(request.images) > self.capabilities.max_input_images:
            raise BadRequest(
                f"This server takes at most {self.capabilities.max_input_images} images "
                f"per edit; this one had {len(request.images)}."
            )
        plan = _plan(size_math.plan_edit, [img.size for img in request.images],
                     request.width, request.height)
        sent = self._common_params(request, plan.generate)
        return self._run("edit", request, sent, plan.output, progress, cancel)

    # -- one call ---------------------------------------------------------------

    def _common_params(self, request: Any, size: tuple[int, int]) -> dict:
        if getattr(request, "loras", ()):
            raise BadRequest("LoRA adapters run on the qwen and tiny backends; this images API takes none. "
                             "Pick no LoRA, or serve the model with the adapter fused.")
        seed = request.seed if request.seed is not None else random.randint(1, 2**32 - 1)
        sent = {
            "model": self.model,
            "n": 1,
            "response_format": "b64_json",
            "size": f"{size[0]}x{size[1]}",
            "seed": int(seed),
            "num_inference_steps": request.steps or DEFAULT_STEPS,
            "true_cfg_scale": (
                request.true_cfg_scale if request.true_cfg_scale is not None else DEFAULT_TRUE_CFG_SCALE
            ),
            "guidance_scale": DEFAULT_GUIDANCE_SCALE,
            "negative_prompt": request.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
        }
        return sent

    def _run(self, kind, request, sent, wanted, progress, cancel) -> Result:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if progress:
            progress(0, 1, None)
        started = time.perf_counter()
        response = self._call(kind, request, sent)
        elapsed = time.perf_counter() - started
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        image = self._decode(response)
        server_size = image.size
        if image.size != wanted:
            image = image.resize(wanted, Image.LANCZOS)
        if progress:
            progress(1, 1, None)
        info = {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "operation": kind,
            "sent": dict(sent),
            "seed": sent["seed"],
            "steps": sent["num_inference_steps"],
            "true_cfg_scale": sent["true_cfg_scale"],
            "negative_prompt": sent["negative_prompt"],
            "server_size": list(server_size),
            "size": list(image.size),
        }
        if kind == "edit":
            info["input_sizes"] = [list(img.size) for img in request.images]
        return Result(
            image=image, seed=sent["seed"], steps=sent["num_inference_steps"],
            elapsed_s=elapsed, info=info,
        )

    def _call(self, kind: str, request: Any, sent: dict):
        import openai  # imported here so other backends never pay for it

        fields = {k: sent[k] for k in ("model", "n", "response_format", "size")}
        extra = {k: sent[k] for k in ("seed", "num_inference_steps", "true_cfg_scale",
                                       "guidance_scale", "negative_prompt")}
        client = self._get_client()
        try:
            if kind == "edit":
                parts = [(f"picture-{i}.png", _png_bytes(img), "image/png")
                         for i, img in enumerate(request.images, start=1)]
                return client.images.edit(image=parts, prompt=request.prompt,
                                          extra_body=extra, **fields)
            return client.images.generate(prompt=request.prompt, extra_body=extra, **fields)
        except openai.APITimeoutError as exc:
            raise BackendUnavailable(
                f"The image server at {self.base_url} did not answer within {self.timeout:g} s. "
                "It may be busy or still loading the model: try again, or raise the remote timeout."
            ) from exc
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(self._connection_message(exc)) from exc
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from exc
        except openai.APIError as exc:
            raise BackendError(
                f"The image server at {self.base_url} sent an answer that could not be read: {exc}"
            ) from exc

    def _get_client(self):
        if self._client is None:
            import openai

            # No automatic retries: a retried edit would silently double a long wait.
            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=self.api_key,
                timeout=self.timeout, max_retries=0,
            )
        return self._client

    def _decode(self, response) -> Image.Image:
        data = getattr(response, "data", None) or []
        b64 = getattr(data[0], "b64_json", None) if data else None
        if not b64:
            raise BackendError(
                f"The image server at {self.base_url} answered without an image. "
                "Check that it serves an image model and supports response_format=b64_json."
            )
        try:
            image = Image.open(io.BytesIO(base64.b64decode(b64)))
            image.load()
        except Exception as exc:
            raise BackendError(
                f"The image server at {self.base_url} sent an image that could not be decoded ({exc})."
            ) from exc
        return to_rgb(image)

    # -- error messages -----------------------------------------------------------

    def _connection_message(self, exc: Exception) -> str:
        text = " ".join(str(e) for e in _causes(exc)).lower()
        if "refused" in text:
            return (
                f"Could not connect to the image server at {self.base_url}: connection refused "
                "(nothing is listening there). Start the server, for example "
                f"`vllm serve {self.model} --omni --port 8091`, or set the remote URL to where it runs."
            )
        if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return (
                f"Could not find the image server at {self.base_url}: the host name does not "
                "resolve. Check the remote URL."
            )
        detail = str(_causes(exc)[-1]) or type(_causes(exc)[-1]).__name__
        return (
            f"Could not reach the image server at {self.base_url} ({detail}). "
            "Check that it is running and that this machine can reach it."
        )

    def _status_error(self, exc) -> BackendError:
        status = exc.status_code
        said = _server_message(exc)
        where = f"The image server at {self.base_url}"
        if status in (401, 403):
            return BackendUnavailable(
                f"{where} refused the API key (HTTP {status}: {said}). Set the remote API key."
            )
        if status == 404:
            return BackendUnavailable(
                f"{where} has no images API (HTTP 404: {said}). Check the remote URL; it usually "
                "ends in /v1, and the server must run an image model (`vllm serve ... --omni`)."
            )
        if status == 429:
            return BackendUnavailable(f"{where} is too busy (HTTP 429: {said}). Try again in a moment.")
        if 400 <= status < 500:
            return BadRequest(f"{where} rejected the request (HTTP {status}): {said}")
        if status == 503:
            return BackendUnavailable(
                f"{where} is not ready (HTTP 503: {said}). It may still be loading the model; "
                "try again shortly."
            )
        return BackendError(
            f"{where} failed while making the image (HTTP {status}): {said}. "
            "Try again; if it keeps failing, check the server's log."
        )


# -- helpers ------------------------------------------------------------------------


def _causes(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


def _server_message(exc) -> str:
    """The server's own words from an OpenAI-style, FastAPI-style or plain error body."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
        else:
            msg = err
        msg = msg or body.get("detail") or body.get("message")
        if msg:
            return str(msg) if not isinstance(msg, list) else "; ".join(map(str, msg))
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    response = getattr(exc, "response", None)
    text = getattr(response, "text", "") if response is not None else ""
    return (text or "no details").strip()[:300]


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _plan(planner, *args):
    try:
        return planner(*args)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
