"""End-to-end fixtures: the real server on a free port, and Chromium driving it.

The server runs as a subprocess (``python -m assistant serve``) on the offline tiny
model with a fresh data folder, once per test session. The browser is the system
Chromium through Playwright's sync API; nothing is ever downloaded. Chainlit's page
asks an unreachable CDN for fonts, so tests wait for elements, never for the
network to go idle, and every wait has a bound.
"""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The base URL of a running server; its log is printed if it fails to start."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    data_dir = tmp_path_factory.mktemp("qec-data")
    log_path = data_dir.parent / "server.log"
    port = _free_port()
    env = dict(os.environ, QEC_DATA_DIR=str(data_dir), QEC_BACKEND="tiny", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("CHAINLIT_AUTH_SECRET", None)
    log = open(log_path, "wb")
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
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_chat(browser, server):
    """A fresh page signed in (local mode) with the chat ready to type in."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(server + "/", timeout=30_000)
    page.wait_for_selector("#chat-input", timeout=30_000)
    # The first assistant message (the tiny-model notice) says the session has started.
    page.wait_for_selector('.step[data-step-type="assistant_message"]', timeout=30_000)
    return page


@pytest.fixture
def page(browser, server):
    page = open_chat(browser, server)
    try:
        yield page
    finally:
        page.context.close()
