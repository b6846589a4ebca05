"""Loading helpers for the qwen backend: reading settings, finding a model, naming failures.

Owns the small decisions around ``from_pretrained``: parsing the dtype (and refusing
float16 on CUDA), checking an attention backend's name, the folder that holds a model
(local or a Hugging Face cache snapshot), the pipeline class, pictures per edit and
licence from ``model_index.json`` or the model's name, and turning a failed load
into one message a user can act on ("not downloaded" only when the files really are
missing). Knows nothing of placing or running a pipeline; that is ``pipelines.qwen``.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Optional

from .base import BackendError, BackendUnavailable
from .lightning import model_name

# `_class_name` in model_index.json -> how many pictures one edit takes.
QWEN21 = "QwenImage21Pipeline"
EDIT_PIPELINES = {"QwenImageEditPlusPipeline": 3, "QwenImageEditPipeline": 1, QWEN21: 10}
# Pipelines that also generate from words alone (no second text-to-image pipeline).
UNIFIED_PIPELINES = frozenset({QWEN21})
# Known by name before their files are here: lower-case model name -> pipeline class.
_BY_NAME = {"qwen-image-edit": "QwenImageEditPipeline", "tiny-2.1": QWEN21}
_BY_PREFIX = {"qwen-image-2.1": QWEN21}

# Pipeline class -> the licence of the published weights, where it is not Apache-2.0.
QWEN21_LICENCE = (
    "Qwen-Image-2.1 is released under the Qwen Research License Agreement, not Apache-2.0: "
    "research and evaluation, non-commercial use only; commercial use needs a separate licence "
    "from Qwen. Read the LICENSE file on its model card (https://huggingface.co/Qwen/Qwen-Image-2.1) "
    "before using its images commercially."
)
LICENCES = {QWEN21: QWEN21_LICENCE}

_DTYPE_NAMES = {
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "half": "float16",
    "fp32": "float32", "float32": "float32", "float": "float32",
}



def parse_dtype(dtype, device):
    import torch

    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        parsed = dtype
    else:
        name = _DTYPE_NAMES.get(str(dtype).lower().replace("torch.", ""))
        if name is None:
            raise BackendUnavailable(
                f"Unknown dtype {dtype!r}. Use bfloat16, float16 or float32."
            )
        parsed = getattr(torch, name)
    if parsed == torch.float16 and str(device).startswith("cuda"):
        raise BackendUnavailable(
            "float16 gives NaN latents and black pictures with Qwen-Image (its activations "
            "overflow fp16). Use bfloat16, the default on CUDA, or float32."
        )
    return parsed


def check_attention(name: Optional[str]) -> Optional[str]:
    if not name:
        return None
    if name.lower() == "auto":
        return "auto"  # picked by hardware when the model loads (pipelines.levers)
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = sorted(b.value for b in AttentionBackendName)
    if name.lower() not in known:
        raise BackendUnavailable(
            f"Attention backend {name!r} is unknown. Known: auto, {', '.join(known)}."
        )
    return name.lower()


def dtype_kwargs(dtype) -> dict:
    # diffusers renamed `torch_dtype` to `dtype` (0.37); use whichever it knows.
    try:
        from diffusers.utils import deprecation_utils

        if hasattr(deprecation_utils, "_resolve_dtype"):
            return {"dtype": dtype}
    except ImportError:
        pass
    return {"torch_dtype": dtype}


def component_class(index: dict, name: str) -> Optional[str]:
    entry = index.get(name)
    return entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else None


def local_folder(model: Optional[str], revision: Optional[str] = None) -> Optional[Path]:
    """The folder holding ``model``: itself when local, else its cached snapshot."""
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "model_index.json", revision=revision)
    except Exception:  # an id that is not a repo name, a broken cache...
        return None
    return Path(found).parent if isinstance(found, str) else None


def pipeline_class(model: Optional[str]) -> Optional[str]:
    """The model's pipeline class without loading it: from its ``model_index.json``
    when that is on disk, else from its name (``Qwen/Qwen-Image-2.1``, ``tiny-2.1``)."""
    folder = local_folder(model)
    try:
        index = json.loads((folder / "model_index.json").read_text()) if folder else {}
    except (OSError, ValueError):
        index = {}
    name = index.get("_class_name")
    if name is None:
        bare = model_name(model).lower()
        name = _BY_NAME.get(bare) or next(
            (cls for prefix, cls in _BY_PREFIX.items() if bare.startswith(prefix)), None)
    return name


def pictures_per_edit(model: str) -> int:
    """Pictures per edit, known before loading (3, Edit Plus's, when unknown)."""
    return EDIT_PIPELINES.get(pipeline_class(model), 3)


def licence(model: Optional[str]) -> Optional[str]:
    """What a user must know about the weights' licence before using the pictures,
    or None when it is Apache-2.0 (the Edit Plus models). Reads no weights."""
    return LICENCES.get(pipeline_class(model))


def same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def load_or_explain(name: str, load, revision: Optional[str] = None,
             hint: str = "set QEC_MODEL to a local folder that holds it"):
    """Run ``load``; turn its failures into one message a user can act on.

    Only "this model is not here" says to download it; a model that is here but
    fails to load (a bad config, a class this version lacks) says what failed.
    """
    try:
        return load()
    except BackendError:
        raise
    except ImportError as exc:
        raise BackendUnavailable(f"Loading {name} needs a missing package: {short(exc)}") from exc
    except (OSError, ValueError) as exc:
        local = Path(str(name)).expanduser().exists()
        if local or not is_missing(exc):
            where = f"from {name}" if local else name
            raise BackendUnavailable(f"Could not load the model {where}: {short(exc)}") from exc
        command = f"huggingface-cli download {name}"
        if revision:
            command += f" --revision {revision}"
        raise BackendUnavailable(
            f"Model {name} is not on this machine and could not be downloaded. "
            f"Download it with `{command}`, or {hint}. Details: {short(exc)}"
        ) from exc


def is_missing(exc: BaseException) -> bool:
    """Whether a loading error means "the files are not here and not reachable"."""
    try:
        from huggingface_hub import errors
    except ImportError:  # pragma: no cover
        errors = None
    missing = tuple(getattr(errors, n) for n in (
        "LocalEntryNotFoundError", "EntryNotFoundError", "RepositoryNotFoundError",
        "RevisionNotFoundError", "GatedRepoError", "OfflineModeIsEnabled",
    ) if errors is not None and hasattr(errors, n))
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, missing) or (isinstance(exc, OSError) and not isinstance(exc, ValueError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


VERSIONS_SEEN: Optional[dict] = None


def versions() -> dict:
    global VERSIONS_SEEN
    if VERSIONS_SEEN is None:
        found = {}
        for dist in ("diffusers", "transformers", "torch"):
            try:
                found[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                found[dist] = None
        VERSIONS_SEEN = found
    return dict(VERSIONS_SEEN)
