"""Community LoRAs: which adapters a server offers, where their files are, and switching
them on one loaded pipeline between jobs.

Owns the ``loras`` setting (``LoraSpec``, ``parse_loras``), finding an adapter's
``.safetensors`` file (a local file, a folder holding one, or a model id already in the
Hugging Face cache: never downloaded here), the sha256 a node records for it, and
``Adapters``: the adapters loaded into one pipeline's transformer, loaded once each
through diffusers' LoRA API and switched per job with ``set_adapters`` /
``disable_lora`` (no reload, nothing allocated per switch). A file that does not fit
the transformer's layers is refused by name before anything is loaded, and a load
that fails half-way is deleted again, so the model stays as it was.

Knows nothing of the chat, requests or how a backend is configured: ``pipelines.qwen``
decides which adapters go into which pipeline and when. Importing this module does not
import torch or diffusers (the settings read ``parse_loras``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .base import BackendError

log = logging.getLogger(__name__)

TARGETS = ("edit", "t2i")
# Adapter names become keys of peft's module dicts: no dots, nothing odd.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Taken by the Lightning LoRA when it stays a separate adapter (the nf4 profile).
RESERVED_NAMES = ("lightning",)
_FIELDS = ("name", "source", "weight_name", "scale", "target")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Where a LoRA's own keys start: everything before is the layer's path in the model.
_LORA_PART = re.compile(r"^(lora_|lokr_)")
_PREFIX = "transformer."


class LoraError(BackendError):
    """A LoRA could not be found, read or loaded, or does not fit the model."""


@dataclass(frozen=True)
class LoraSpec:
    """One adapter the server offers.

    ``source``: a local ``.safetensors`` file, a folder holding one, or a Hugging Face
    model id (``owner/name``, or ``owner/name/path/in/repo.safetensors``) that is
    already in the local cache. ``weight_name`` picks the file in a folder or repo
    that holds several. ``scale`` is the strength used when a job names the adapter
    without one. ``target``: the transformer it is made for, the edit model's or the
    text-to-image model's (one transformer doing both gets both kinds).
    """

    name: str
    source: str
    weight_name: Optional[str] = None
    scale: float = 1.0
    target: str = "edit"

    def as_dict(self) -> dict:
        return asdict(self)


def parse_loras(value: Any) -> list[LoraSpec]:
    """The ``loras`` setting (a list of dicts, or LoraSpecs) as LoraSpecs; ValueError
    names the entry and what is wrong with it."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError("loras must be a list of adapters, e.g. "
                         '[{"name": "ink", "source": "/loras/ink.safetensors", "scale": 0.8}].')
    specs: list[LoraSpec] = []
    for i, item in enumerate(value):
        spec = item if isinstance(item, LoraSpec) else _parse_one(i, item)
        _check_spec(i, spec)
        if spec.name in {s.name for s in specs}:
            raise ValueError(f"loras[{i}]: the name {spec.name!r} is used twice; each adapter needs its own.")
        specs.append(spec)
    return specs


def _parse_one(i: int, item: Any) -> LoraSpec:
    where = f"loras[{i}]"
    if not isinstance(item, Mapping):
        raise ValueError(f"{where} must be an object with at least a source, not {item!r}.")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; known: {', '.join(_FIELDS)}.")
    source = item.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"{where} needs a source: a .safetensors file, a folder or a model id.")
    weight_name = item.get("weight_name")
    if weight_name is not None and (not isinstance(weight_name, str) or not weight_name.strip()):
        raise ValueError(f"{where}: weight_name must be a file name.")
    name = item.get("name")
    if name is None:
        name = _default_name(source.strip(), weight_name)
    scale = item.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"{where}: scale must be a number, not {scale!r}.")
    return LoraSpec(name=name, source=source.strip(), weight_name=weight_name,
                    scale=float(scale), target=item.get("target", "edit"))


def _check_spec(i: int, spec: LoraSpec) -> None:
    where = f"loras[{i}]"
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        raise ValueError(f"{where}: the name {spec.name!r} must be 1-64 letters, digits, '-' or '_' "
                         "(starting with a letter or digit).")
    if spec.name.lower() in RESERVED_NAMES:
        raise ValueError(f"{where}: the name {spec.name!r} is taken by the Lightning LoRA; pick another.")
    if not math.isfinite(spec.scale):
        raise ValueError(f"{where}: scale must be a finite number.")
    if spec.target not in TARGETS:
        raise ValueError(f"{where}: target must be one of {', '.join(TARGETS)}, not {spec.target!r}.")


def _default_name(source: str, weight_name: Optional[str]) -> str:
    stem = Path(weight_name or source.rstrip("/")).name
    if stem.endswith(".safetensors"):
        stem = stem[: -len(".safetensors")]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:64]
    return name or "lora"


# ----- finding the file ---------------------------------------------------------------


def resolve(spec: LoraSpec) -> Path:
    """The ``.safetensors`` file ``spec`` names. Offline: a model id is looked up in the
    local Hugging Face cache only. LookupError says what is missing and how to get it.

    Cache paths are kept as they are (not resolved to the blob they link to): diffusers
    reads a file by its ``.safetensors`` name.
    """
    path = Path(spec.source).expanduser()
    if path.is_file():
        return _safetensors(path.absolute(), spec.source)
    if path.is_dir():
        return _pick(path.absolute(), spec.weight_name, spec.source)
    repo, weight_name = spec.source, spec.weight_name
    parts = spec.source.split("/")
    if len(parts) >= 3 and parts[-1].endswith(".safetensors") and weight_name is None:
        repo, weight_name = "/".join(parts[:2]), "/".join(parts[2:])
    if not _REPO_ID.match(repo):
        raise LookupError(f"{spec.source} is not a file or folder on this machine.")
    return _from_cache(repo, weight_name, spec.source)


def _safetensors(path: Path, source: str) -> Path:
    if not path.name.endswith(".safetensors"):
        raise LookupError(f"{source} is not a .safetensors file (other formats can run code when "
                          "loaded, so only .safetensors is read).")
    return path


def _pick(folder: Path, weight_name: Optional[str], source: str) -> Path:
    if weight_name:
        path = folder / weight_name
        if not path.is_file():
            raise LookupError(f"{source} holds no file {weight_name}.")
        return _safetensors(path, source)
    found = sorted(folder.glob("*.safetensors")) or sorted(folder.rglob("*.safetensors"))
    if not found:
        raise LookupError(f"{source} holds no .safetensors file.")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in found[:5])
        raise LookupError(f"{source} holds several .safetensors files ({names}); set weight_name.")
    return found[0]


def _hub_cache() -> Optional[str]:
    # Read now, not when huggingface_hub was imported, so a changed HF_HUB_CACHE counts.
    return os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or None


def _from_cache(repo: str, weight_name: Optional[str], source: str) -> Path:
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    download = f"huggingface-cli download {repo}" + (f" {weight_name}" if weight_name else "")
    missing = (f"{source} is not a local file or folder, and the model {repo} is not in the "
               f"Hugging Face cache. Download it with `{download}`, or set source to a local file.")
    if weight_name:
        try:
            found = try_to_load_from_cache(repo, weight_name, cache_dir=_hub_cache())
        except Exception as exc:  # a malformed id or cache
            raise LookupError(f"{missing} ({exc})") from exc
        if not isinstance(found, str):
            raise LookupError(missing)
        return _safetensors(Path(found), source)
    try:
        folder = snapshot_download(repo, local_files_only=True, cache_dir=_hub_cache())
    except Exception as exc:
        raise LookupError(missing) from exc
    return _pick(Path(folder), None, source)


_SHA_CACHE: dict = {}
_SHA_LOCK = threading.Lock()


def file_sha256(path: os.PathLike | str) -> str:
    """The file's sha256 (hex), remembered by path, modification time and size."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.absolute()), stat.st_mtime_ns, stat.st_size)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


# ----- the adapters of one pipeline ---------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    spec: LoraSpec
    path: Path
    sha256: str


class Adapters:
    """The community adapters loaded into one pipeline's transformer, and which are on.

    Adapters already in the transformer when this is made (the Lightning LoRA kept
    unfused under nf4) are someone else's: they stay on at their scale through every
    switch and are never deleted. Not thread-safe: the backend switches and runs one
    job at a time.
    """

    def __init__(self, pipe, keep: Optional[Mapping[str, float]] = None):
        self.pipe = pipe
        if keep is None:
            keep = {name: 1.0 for name in _adapter_names(pipe.transformer)}
        self.keep = dict(keep)
        self.loaded: dict[str, Loaded] = {}
        self.active: dict[str, float] = {}

    @property
    def transformer(self):
        return self.pipe.transformer

    def names(self) -> list[str]:
        return list(self.loaded)

    def load(self, spec: LoraSpec, path: Optional[Path] = None) -> Loaded:
        """Load ``spec`` once (a second call with the same spec does nothing). What is
        on stays on: a newly loaded adapter starts off. LoraError names the adapter."""
        name = spec.name
        if name in self.loaded:
            if self.loaded[name].spec != spec:
                raise LoraError(f"A different LoRA is already loaded as {name!r}.")
            return self.loaded[name]
        if name in self.keep or name in _adapter_names(self.transformer):
            raise LoraError(f"The adapter name {name!r} is already taken in this model.")
        _require_peft()
        if not hasattr(self.pipe, "lora_state_dict"):
            raise LoraError(f"The LoRA {name!r} cannot be loaded: {type(self.pipe).__name__} takes no LoRAs.")
        try:
            path = Path(path) if path is not None else resolve(spec)
        except LookupError as exc:
            raise LoraError(f"The LoRA {name!r} was not found: {exc}") from exc
        sha256 = file_sha256(path)
        try:
            state_dict, metadata = self.pipe.lora_state_dict(
                str(path.parent), weight_name=path.name, local_files_only=True,
                return_lora_metadata=True)
        except Exception as exc:
            raise LoraError(f"The LoRA {name!r} could not be read from {path}: {_short(exc)}") from exc
        state_dict = with_transformer_prefix(state_dict, self.transformer)
        problems = misfits(state_dict, self.transformer)
        if problems:
            raise LoraError(f"The LoRA {name!r} does not fit this model: {problems}")
        before = _adapter_names(self.transformer)
        try:
            with warnings.catch_warnings():
                # peft's note on every adapter after the first: several is the point here.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                # What load_lora_weights does, on the state dict already read and checked
                # (passing it as a dict would drop the file's adapter metadata: its alpha).
                self.pipe.load_lora_into_transformer(
                    state_dict, transformer=self.transformer, adapter_name=name,
                    metadata=metadata, _pipeline=self.pipe,
                    low_cpu_mem_usage=_low_cpu_mem_usage())
            if name not in _adapter_names(self.transformer):
                raise RuntimeError("diffusers loaded none of its weights")
        except Exception as exc:
            log.error("loading the LoRA %r failed: %s", name, exc)
            self._remove(name, before)
            self._apply(self.active)
            raise LoraError(f"The LoRA {name!r} could not be loaded into this model: "
                            f"{_short(exc)}") from exc
        self.loaded[name] = Loaded(spec, path, sha256)
        # diffusers makes the adapter it just loaded the only one on: put back what was.
        self._apply(self.active)
        log.info("loaded the LoRA %r from %s (sha256 %s)", name, path, sha256[:12])
        return self.loaded[name]

    def activate(self, selection: Mapping[str, float]) -> None:
        """Turn on exactly ``selection`` ({name: scale}); empty turns them all off.
        Switches flags and scales on the loaded layers: no weights are loaded or made."""
        selection = {str(name): float(scale) for name, scale in dict(selection).items()}
        unknown = [name for name in selection if name not in self.loaded]
        if unknown:
            raise LoraError(f"No LoRA called {unknown[0]!r} is loaded"
                            + (f" (loaded: {', '.join(self.loaded)})." if self.loaded else "."))
        self._apply(selection)

    def records(self, selection: Mapping[str, float]) -> list[dict]:
        """What a node records of ``selection``: name, sha256 of the file, scale, source, file."""
        out = []
        for name, scale in dict(selection).items():
            loaded = self.loaded[name]
            out.append({"name": name, "sha256": loaded.sha256, "scale": float(scale),
                        "source": loaded.spec.source, "file": loaded.path.name})
        return out

    def _apply(self, selection: dict) -> None:
        wanted = {**self.keep, **selection}
        if wanted:
            self.pipe.enable_lora()  # set_adapters alone leaves disabled layers off
            self.pipe.set_adapters(list(wanted), adapter_weights=list(wanted.values()))
        elif self.loaded:
            self.pipe.disable_lora()  # set_adapters([]) is refused
        self.active = dict(selection)

    def _remove(self, name: str, before: set) -> None:
        """Delete a half-loaded adapter and check the transformer is as it was."""
        if name in _adapter_names(self.transformer) or _layers_holding(self.transformer, name):
            with warnings.catch_warnings():
                # "was active which is now deleted": what was on is put back after this.
                warnings.filterwarnings("ignore", message="Adapter .* was active")
                self.pipe.delete_adapters(name)
        left = _adapter_names(self.transformer)
        if left != before or _layers_holding(self.transformer, name):
            raise LoraError(f"Removing the half-loaded LoRA {name!r} failed; restart the server "
                            f"(adapters now: {sorted(left)}).")


def attach(transformer, adapters: Adapters) -> None:
    """Keep ``adapters`` with the transformer they are loaded in: pipelines that share
    a transformer (edit and text-to-image on one model) share its adapters."""
    transformer._qec_adapters = adapters


def adapters_of(transformer) -> Optional[Adapters]:
    return getattr(transformer, "_qec_adapters", None)


def with_transformer_prefix(state_dict: dict, transformer) -> dict:
    """Keys saved from the transformer itself (``transformer_blocks.0.attn.to_q.lora_A.weight``,
    no ``transformer.``) get the prefix diffusers filters on; without it they would be
    skipped with only a warning."""
    if not state_dict or any(key.startswith(_PREFIX) for key in state_dict):
        return state_dict
    children = {name for name, _ in transformer.named_children()}
    if all(key.split(".", 1)[0] in children for key in state_dict):
        return {_PREFIX + key: value for key, value in state_dict.items()}
    return state_dict


def misfits(state_dict: dict, transformer) -> str:
    """Why the (diffusers-format) ``state_dict`` does not fit ``transformer``; "" when it does."""
    if not state_dict:
        return "it holds no LoRA weights."
    modules = dict(transformer.named_modules())
    no_layer, not_lora, bad_shape = [], [], []
    ranks: dict = {}
    for key, value in state_dict.items():
        if not key.startswith(_PREFIX):
            no_layer.append(key)
            continue
        parts = key[len(_PREFIX):].split(".")
        cut = next((i for i, part in enumerate(parts) if _LORA_PART.match(part)), None)
        if cut is None or cut == 0:
            not_lora.append(key)
            continue
        layer_name, kind = ".".join(parts[:cut]), parts[cut]
        layer = modules.get(layer_name)
        if layer is None:
            no_layer.append(key)
            continue
        shape, end = tuple(getattr(value, "shape", ())), parts[-1]
        inputs, outputs = getattr(layer, "in_features", None), getattr(layer, "out_features", None)
        if inputs is None or outputs is None:
            continue  # not a linear layer: left to peft
        if kind == "lora_A" and end == "weight":
            ranks.setdefault(layer_name, {})["A"] = shape[0] if shape else None
            if len(shape) != 2 or shape[1] != inputs:
                bad_shape.append(f"{key} is {_dims(shape)}; the layer takes {inputs} inputs")
        elif kind == "lora_B" and end == "weight":
            ranks.setdefault(layer_name, {})["B"] = shape[1] if len(shape) == 2 else None
            if len(shape) != 2 or shape[0] != outputs:
                bad_shape.append(f"{key} is {_dims(shape)}; the layer gives {outputs} outputs")
        elif kind == "lora_B" and end == "bias" and shape != (outputs,):
            bad_shape.append(f"{key} is {_dims(shape)}; the layer gives {outputs} outputs")
    for layer_name, rank in ranks.items():
        if None not in (rank.get("A"), rank.get("B")) and rank["A"] != rank["B"]:
            bad_shape.append(f"{layer_name} has rank {rank['A']} in lora_A but {rank['B']} in lora_B")
    found = []
    if no_layer:
        found.append(f"{len(no_layer)} of its {len(state_dict)} weights name no layer of this "
                     f"model (e.g. {no_layer[0]})")
    if not_lora:
        found.append(f"{len(not_lora)} weights are not LoRA weights (e.g. {not_lora[0]})")
    if bad_shape:
        found.append(f"{len(bad_shape)} weights have the wrong shape (e.g. {bad_shape[0]})")
    return "; ".join(found) + ("." if found else "")


def _dims(shape) -> str:
    return "x".join(str(n) for n in shape) or "a scalar"


def _adapter_names(transformer) -> set:
    return set(getattr(transformer, "peft_config", None) or {})


def _layers_holding(transformer, name: str) -> bool:
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return False
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer):
            for attr in ("lora_A", "lora_B", "lora_magnitude_vector"):
                held = getattr(module, attr, None)
                if held is not None and name in held:
                    return True
    return False


def _low_cpu_mem_usage() -> bool:
    """load_lora_weights' default: no random init of layers about to be overwritten."""
    try:
        from diffusers.loaders import lora_pipeline
    except ImportError:
        return False
    return bool(getattr(lora_pipeline, "_LOW_CPU_MEM_USAGE_DEFAULT_LORA", False))


def _require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError as exc:
        raise LoraError("LoRAs need the peft package: pip install peft") from exc


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
