"""The one settings object: environment variables prefixed ``QEC_`` and a ``.env`` file.

Owns every knob of a running app and its defaults, so ``make run`` works with none
set: SQLite and a blob folder under ``data/``, the tiny model when there is no GPU.
Deliberately not ``DATABASE_URL``: that name silently switches on Chainlit's own
Postgres data layer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QEC_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the database, blobs and secrets live.")
    database_url: Optional[str] = Field(None, description="SQLAlchemy URL; default SQLite in data_dir.")
    blob_dir: Optional[Path] = Field(None, description="Image files; default data_dir/blobs.")

    backend: Optional[str] = Field(None, description="tiny, qwen or remote; default qwen with CUDA else tiny.")
    model: Optional[str] = Field(None, description="Model id or local folder for the qwen/remote backend.")
    models: list[str] = Field(default_factory=list, description=(
        "Models users may pick in the settings panel (multi-user mode); local mode allows any."))
    revision: Optional[str] = None
    profile: Literal["auto", "full", "fp8", "model-offload", "nf4", "group-offload"] = Field(
        "auto", description="qwen memory profile; auto picks the fastest that fits the free GPU memory.")
    lightning: Optional[int] = Field(None, description="Lightning LoRA steps (4 or 8) for the qwen backend.")
    attention: str = Field("auto", description=(
        "diffusers attention backend: auto (FlashAttention 3 or 2 when installed), native, flash, sage..."))
    compile: bool = Field(False, description="Compile the repeated transformer blocks (qwen; warm-up on the first job).")
    cache: Literal["off", "first-block", "taylorseer"] = Field(
        "off", description="Step caching (qwen): faster, and a small change to the pictures.")
    t2i_mode: Literal["auto", "pipeline", "canvas"] = Field(
        "auto", description=("Text-to-image with Qwen-Image (pipeline), the edit model on a blank canvas, "
                             "or auto: pipeline when both transformers fit."))
    loras: list[dict] = Field(default_factory=list, description=(
        "Community LoRAs the server offers (qwen and tiny backends), a JSON list: "
        '[{"name": "ink", "source": "/loras/ink.safetensors", "scale": 0.8, "target": "edit"}]. '
        "source: a .safetensors file, a folder holding one, or a model id already in the "
        "Hugging Face cache; weight_name picks a file among several; target: edit or t2i."))
    tiny_step_delay_s: float = Field(0.0, ge=0, le=5, description=(
        "Seconds the tiny model waits at each step, so progress and Stop can be watched "
        "(demos and the e2e tests); 0 = as fast as it runs."))
    remote_url: str = Field("http://127.0.0.1:8091/v1", description="OpenAI-compatible images API base URL.")
    remote_api_key: str = "EMPTY"
    remote_timeout: float = 600.0

    polish: Literal["auto", "off", "local", "remote"] = Field("auto", description=(
        "Prompt polish: the default engine. auto: remote when polish_url is set, local with the "
        "qwen backend, off with the tiny one."))
    polish_url: Optional[str] = Field(None, description="OpenAI-compatible chat-completions base URL (remote polish).")
    polish_model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="The model name sent to it.")
    polish_api_key: str = "EMPTY"
    polish_timeout: float = Field(20.0, gt=0, description="Seconds before a remote polish gives up.")

    workers: int = Field(1, ge=1, description="Image jobs running at once (one per GPU).")
    job_timeout: float = Field(1800.0, gt=0, description="Seconds before a running job is stopped.")

    mode: Literal["local", "multi"] = Field("local", description="local: one person, no sign-in.")
    local_user: str = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: list[str] = Field(default_factory=list, description=(
        "Extra host names the local mode answers to (it answers to loopback names only)."))

    @field_validator("data_dir", "blob_dir")
    @classmethod
    def _absolute(cls, v: Optional[Path]) -> Optional[Path]:
        # Made absolute at once: the server changes its working folder at start-up.
        return None if v is None else Path(v).expanduser().resolve()

    @field_validator("loras")
    @classmethod
    def _loras(cls, v: list) -> list:
        from pipelines.loras import parse_loras

        return [spec.as_dict() for spec in parse_loras(v)]  # ValueError names the bad entry

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'qec.db').as_posix()}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    def allowed_models(self) -> Optional[list]:
        """The models a user may choose; None = any (the local mode's one person)."""
        if self.mode == "local":
            return None
        return sorted(set(self.models) | ({self.model} if self.model else set()))

    def offered_loras(self) -> list[str]:
        """Names of the LoRAs users may pick (the settings panel), in both modes: only
        adapters the server loaded can run."""
        return [entry["name"] for entry in self.loras]

    def local_hosts(self) -> list[str]:
        """Host names the local mode serves: loopback, the bind address, and any extras.

        A page on another site that gets its name to resolve to 127.0.0.1 (DNS
        rebinding) is refused, since the local mode signs anyone in.
        """
        names = {"127.0.0.1", "localhost", "::1", "[::1]", *self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host)
        return sorted(names)

    def backend_name(self) -> str:
        from pipelines import default_backend_name

        return self.backend or default_backend_name()

    def polish_engine(self) -> str:
        """The polish engine a conversation starts with."""
        if self.polish != "auto":
            return self.polish
        if self.polish_url:
            return "remote"
        return "local" if self.backend_name() == "qwen" else "off"

    def backend_settings(self, name: str, model: Optional[str] = None) -> dict:
        """Constructor settings for backend ``name`` (and an optional model override)."""
        revision = self.revision if not model else None  # the revision names the configured model's
        chosen = model  # a model picked per conversation (the settings panel)
        model = model or self.model
        if name == "qwen":
            out = {"profile": self.profile}
            if model:
                out["model"] = model
            if revision:
                out["revision"] = revision
            if self.lightning:
                out["lightning"] = self.lightning
            out["attention"] = self.attention
            out["compile"] = self.compile
            out["cache"] = self.cache
            out["t2i_mode"] = self.t2i_mode
            if self.loras:
                out["loras"] = [dict(entry) for entry in self.loras]
            return out
        if name == "remote":
            out = {"base_url": self.remote_url, "api_key": self.remote_api_key,
                   "timeout": self.remote_timeout}
            if model:
                out["model"] = model
            return out
        if name == "tiny":
            out = {}
            if chosen:  # "tiny-2.1", or a tiny model folder (QEC_MODEL names the real model's)
                out["model"] = chosen
            if self.loras:
                out["loras"] = [dict(entry) for entry in self.loras]
            if self.tiny_step_delay_s:
                out["step_delay_s"] = self.tiny_step_delay_s
            return out
        return {}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
