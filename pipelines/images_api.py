"""A small OpenAI-compatible images server in front of any local backend.

Owns the HTTP side of `POST /v1/images/edits` (multipart, pictures as `image` or
`image[]` parts in order) and `POST /v1/images/generations` (JSON), with the same
extra fields vLLM-Omni accepts (`seed`, `num_inference_steps`, `true_cfg_scale`,
`guidance_scale`, `negative_prompt`), and errors in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`). Serve the tiny or qwen backend to
other machines, which reach it with the `remote` backend. Knows nothing of which
backend it serves: it only calls `generate` / `edit`, one at a time.

Run it: `python -m pipelines.images_api --backend tiny --port 8091`.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import io
import os
import threading
import time
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image, ImageOps
from starlette.datastructures import UploadFile

from .base import (
    Backend,
    BackendError,
    BackendUnavailable,
    BadRequest,
    Cancelled,
    EditRequest,
    GenerateRequest,
)

MAX_PIXELS = 40_000_000
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class ApiError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param


def create_app(backend: Backend, *, model_name: Optional[str] = None,
               api_key: Optional[str] = None) -> FastAPI:
    """A FastAPI app serving ``backend``; calls run one at a time in a worker thread.

    With ``api_key``, every request must carry ``Authorization: Bearer <api_key>``.
    """
    app = FastAPI(title="Qwen Edit Chat images API")

    if api_key:
        @app.middleware("http")
        async def _check_key(request, call_next):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return _error(401, "A valid API key is required (Authorization: Bearer ...).",
                              "invalid_request_error", None)
            return await call_next(request)
    lock = threading.Lock()  # backends hold one pipeline; never run two calls at once
    served_model = model_name or getattr(backend, "model", None) or backend.name

    def run(method: str, request: Any):
        with lock:
            return getattr(backend, method)(request)

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return _error(exc.status, exc.message, exc.type, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc: RequestValidationError):
        return _error(400, f"Invalid request: {exc.errors()}", "invalid_request_error", None)

    @app.get("/health")
    async def health():
        return {"status": "ok", "backend": backend.name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list",
                "data": [{"id": served_model, "object": "model", "created": 0, "owned_by": backend.name}]}

    @app.post("/v1/images/edits")
    async def edits(http: Request):
        if not http.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "Send the edit as multipart/form-data with one or more `image` parts.")
        form = await http.form()
        try:
            images = [await _read_image(part, i) for i, part in enumerate(
                (v for k, v in form.multi_items() if k in ("image", "image[]")), start=1)]
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        finally:
            await form.close()
        if not images:
            raise ApiError(400, "No picture to edit: send it as an `image` (or `image[]`) file part.",
                           param="image")
        options = _options(fields)
        request = _build(EditRequest, prompt=fields.get("prompt"), images=tuple(images), **options)
        return await _answer(run, "edit", request)

    @app.post("/v1/images/generations")
    async def generations(http: Request):
        try:
            body = await http.json()
        except Exception:
            raise ApiError(400, "The body must be a JSON object with at least a `prompt`.")
        if not isinstance(body, dict):
            raise ApiError(400, "The body must be a JSON object with at least a `prompt`.")
        options = _options(body)
        request = _build(GenerateRequest, prompt=body.get("prompt"), **options)
        return await _answer(run, "generate", request)

    return app


# -- request parsing ------------------------------------------------------------------


def _options(fields: dict) -> dict:
    """Diffusion options from form fields or JSON; checks what the backend does not."""
    n = _number(fields, "n", int)
    if n not in (None, 1):
        raise ApiError(400, "Only n=1 is supported: ask for one image per request.", param="n")
    fmt = fields.get("response_format") or "b64_json"
    if fmt != "b64_json":
        raise ApiError(400, "Only response_format=b64_json is supported.", param="response_format")
    output_format = fields.get("output_format") or "png"
    if output_format != "png":
        raise ApiError(400, "Only output_format=png is supported.", param="output_format")
    width, height = _size(fields.get("size"))
    negative = fields.get("negative_prompt")
    return {
        "seed": _number(fields, "seed", int),
        "steps": _number(fields, "num_inference_steps", int),
        "true_cfg_scale": _number(fields, "true_cfg_scale", float),
        "negative_prompt": negative if negative not in (None, "") else None,
        "width": width,
        "height": height,
    }


def _number(fields: dict, name: str, kind):
    value = fields.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if kind is float:
            return float(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            return int(value)
        return int(value)  # ints and digit strings; float() would round big seeds
    except (TypeError, ValueError):
        word = "a whole number" if kind is int else "a number"
        raise ApiError(400, f"`{name}` must be {word}, not {value!r}.", param=name)


def _size(value) -> tuple[Optional[int], Optional[int]]:
    if value in (None, "", "auto"):
        return None, None
    try:
        w, h = str(value).lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise ApiError(400, f"`size` must look like 1024x768 (or 'auto'), not {value!r}.", param="size")


async def _read_image(part, index: int) -> Image.Image:
    if not isinstance(part, UploadFile):
        raise ApiError(400, f"Image {index} must be a file part, not a text field.", param="image")
    data = await part.read()
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, f"Image {index} is larger than {MAX_UPLOAD_BYTES // 2**20} MB.", param="image")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:  # checked before decoding: no pixel bombs
            raise ApiError(413, f"Image {index} has {img.width}x{img.height} pixels; the limit is "
                                f"{MAX_PIXELS // 1_000_000} megapixels.", param="image")
        img.load()
        # Upright as the camera meant it: phones store the rotation in EXIF.
        return ImageOps.exif_transpose(img)
    except ApiError:
        raise
    except (Image.DecompressionBombError, Exception):
        name = part.filename or f"image {index}"
        raise ApiError(400, f"Image {index} ({name}) is not a picture that can be read.", param="image")


def _build(cls, **kwargs):
    try:
        return cls(**kwargs)
    except BadRequest as exc:
        raise ApiError(400, str(exc))


async def _answer(run, method: str, request) -> JSONResponse:
    try:
        result = await run_in_threadpool(run, method, request)
    except BadRequest as exc:
        raise ApiError(400, str(exc))
    except Cancelled as exc:
        raise ApiError(499, str(exc), type_="cancelled")
    except BackendUnavailable as exc:
        raise ApiError(503, str(exc), type_="server_error")
    except BackendError as exc:
        raise ApiError(500, str(exc), type_="server_error")
    buf = io.BytesIO()
    result.image.save(buf, format="PNG")
    w, h = result.image.size
    return JSONResponse({
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode("ascii"), "revised_prompt": None}],
        "output_format": "png",
        "size": f"{w}x{h}",
        # Not in OpenAI's schema; clients that know it can record how the image was made.
        "seed": result.seed,
        "steps": result.steps,
        "elapsed_s": round(result.elapsed_s, 3),
    })


def _error(status: int, message: str, type_: str, param: Optional[str]) -> JSONResponse:
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": type_, "param": param, "code": None}})


def main(argv: Optional[list[str]] = None) -> None:
    import uvicorn

    from . import default_backend_name, get_backend

    parser = argparse.ArgumentParser(prog="python -m pipelines.images_api",
                                     description="Serve a backend as an OpenAI-compatible images API.")
    parser.add_argument("--backend", default=None, help="backend name (default: qwen with a GPU, else tiny)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--api-key", default=os.environ.get("QEC_IMAGES_API_KEY"),
                        help="require this key from clients (default: $QEC_IMAGES_API_KEY; none)")
    args = parser.parse_args(argv)
    backend = get_backend(args.backend or default_backend_name())
    uvicorn.run(create_app(backend, api_key=args.api_key), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
