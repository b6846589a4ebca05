"""The e2e harness: start the real server on a free port, open a signed-in chat page.

Used by the fixtures in conftest.py and by tests that restart a server on the same
data or run one in multi-user mode.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 90
VIEWPORT = {"width": 1280, "height": 900}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, chars: int = 8000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def running_server(data_dir: Path, **extra_env: str):
    """Start ``python -m assistant serve`` on ``data_dir``; yield its URL; stop it.

    Its log is printed if it fails to start. Used for the shared server and by
    tests that restart a server on the same data or run one in multi-user mode.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    log_path = data_dir.parent / f"server-{data_dir.name}.log"
    port = _free_port()
    # A short wait at each tiny step, so a 60-step run lasts long enough to be stopped
    # however fast this machine is.
    env = dict(os.environ, QEC_DATA_DIR=str(data_dir), QEC_BACKEND="tiny", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", QEC_TINY_STEP_DELAY_S="0.05")
    env.pop("CHAINLIT_AUTH_SECRET", None)
    env.update(extra_env)
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{_log_tail(log_path)}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server gave no 200 on / within {START_TIMEOUT_S} s:\n"
                            f"{_log_tail(log_path)}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        if os.environ.get("QEC_E2E_SHOW_LOG"):
            print(_log_tail(log_path, 20000))


def open_chat(browser, server, context=None):
    """A fresh page signed in (local mode, or ``context`` already signed in) ready to type in."""
    if context is None:
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(server + "/", timeout=30_000)
    page.wait_for_selector("#chat-input", timeout=30_000)
    # The settings button comes with on_chat_start's settings panel: the chat has opened.
    # (Nothing is sent at start, so the welcome screen and its starters stay.)
    page.wait_for_selector("#chat-settings-open-modal", timeout=30_000)
    return page
