"""The running app's shared objects: settings, store, job queue, backends, service.

Owns their construction, once per process, on first use, and the start-up notice
(which backend runs, and how to get the real model). Knows nothing of chainlit.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pipelines import licence as model_licence
from pipelines import get_backend
from sessions import HistoryError, Store

from .config import Settings, get_settings
from . import datalayer, migrate, tables, users  # noqa: F401  (tables registers the chat's tables)
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
        """Said with a conversation's first results: the tiny model, a model's licence."""
        parts = [TINY_NOTICE] if self.backend_name == "tiny" else []
        try:
            licence = model_licence(self.backend_name, self.settings.model)
        except Exception:  # an unavailable backend says so when it is used
            licence = None
        if licence:
            parts.append(licence)
        return "\n\n".join(parts) or None

    def user_is_active(self, identifier: str) -> bool:
        """Local mode: always. Multi-user mode: the account still exists."""
        return self.token_is_current(identifier, None)

    def token_is_current(self, identifier: str, issued_at: Optional[float]) -> bool:
        """Local mode: always. Multi-user mode: the account exists and the token (when
        its issue time is known) was issued after the password was last set."""
        if self.settings.mode == "local":
            return True
        return users.token_accepted(self.store.engine, identifier, issued_at)

    def thread_owner(self, thread_id: str) -> Optional[str]:
        try:
            return self.store.conversation(thread_id).owner
        except HistoryError:
            return None

    def save_feedback(self, owner: str, feedback) -> Optional[str]:
        return datalayer.save_feedback(self.store.engine, owner, feedback)

    def delete_feedback(self, owner: str, feedback_id: str) -> bool:
        return datalayer.delete_feedback(self.store.engine, owner, feedback_id)

    def close(self) -> None:
        self.queue.shutdown()
        self.store.close()


_runtime: Optional[Runtime] = None
_lock = threading.Lock()


def build_runtime(settings: Settings) -> Runtime:
    private_data_dir(settings.data_dir)
    migrate.upgrade(settings.resolved_database_url)  # every table, by migrations
    store = Store.open(database_url=settings.resolved_database_url,
                       blob_dir=settings.resolved_blob_dir)
    store.recover_interrupted_jobs()  # this process runs the jobs: fail those a crash left
    queue = JobQueue(workers=settings.workers)
    backends = BackendPool(settings.backend_name(),
                           lambda name, model: get_backend(name, **settings.backend_settings(name, model)),
                           configured_model=settings.model)
    service = ChatService(store, backends, queue, job_timeout=settings.job_timeout,
                          cap_per_conversation=settings.mode == "local",
                          polish_settings={"engine": settings.polish_engine(), "url": settings.polish_url,
                                           "model": settings.polish_model,
                                           "api_key": settings.polish_api_key,
                                           "timeout": settings.polish_timeout})
    return Runtime(settings, store, queue, backends, service)


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings())
        return _runtime


def auth_secret(data_dir: Path) -> str:
    """The signing secret for sign-in tokens, made once and kept in the data folder.

    Created readable by its owner alone, in one step, so no other user ever sees it
    and two first starts agree on one secret.
    """
    path = data_dir / "auth-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
    for _ in range(50):  # another process may be writing it right now
        secret = path.read_text().strip()
        if secret:
            return secret
        time.sleep(0.05)
    raise RuntimeError(f"{path} is empty: delete it and start again.")


def private_data_dir(data_dir: Path) -> None:
    """The data folder holds the database (password hashes) and the secret: owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        data_dir.chmod(0o700)
    except OSError:  # e.g. a mounted folder we do not own: leave it as its owner set it
        pass
