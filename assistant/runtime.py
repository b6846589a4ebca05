"""The running app's shared objects: settings, store, job queue, backends, service.

Owns their construction, once per process, on first use, and the start-up notice
(which backend runs, and how to get the real model). Knows nothing of chainlit.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sqlmodel import SQLModel

from pipelines import get_backend
from sessions import Store

from .config import Settings, get_settings
from . import tables  # noqa: F401  (registers the chat's tables)
from .queue import JobQueue
from .service import BackendPool, ChatService

TINY_NOTICE = (
    "Running the offline **tiny test model**: its pictures are random noise, but every "
    "step runs the real code. On a machine with an NVIDIA GPU, start with "
    "`QEC_BACKEND=qwen make run` to use Qwen Image Edit."
)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    queue: JobQueue
    backends: BackendPool
    service: ChatService

    @property
    def backend_name(self) -> str:
        return self.backends.default

    @property
    def notice(self) -> Optional[str]:
        return TINY_NOTICE if self.backend_name == "tiny" else None

    def close(self) -> None:
        self.queue.shutdown()
        self.store.close()


_runtime: Optional[Runtime] = None
_lock = threading.Lock()


def build_runtime(settings: Settings) -> Runtime:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(database_url=settings.resolved_database_url,
                       blob_dir=settings.resolved_blob_dir)
    SQLModel.metadata.create_all(store.engine)  # the chat's own tables (assistant.tables)
    store.recover_interrupted_jobs()  # this process runs the jobs: fail those a crash left
    queue = JobQueue(workers=settings.workers)
    backends = BackendPool(settings.backend_name(),
                           lambda name, model: get_backend(name, **settings.backend_settings(name, model)))
    service = ChatService(store, backends, queue, job_timeout=settings.job_timeout)
    return Runtime(settings, store, queue, backends, service)


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings())
        return _runtime


def auth_secret(data_dir: Path) -> str:
    """The signing secret for sign-in tokens, made once and kept in the data folder."""
    path = data_dir / "auth-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
