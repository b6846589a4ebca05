"""End-to-end fixtures: the real server on a free port, and Chromium driving it.

The server runs as a subprocess (``python -m assistant serve``) on the offline tiny
model with a fresh data folder, once per test session. The browser is the system
Chromium through Playwright's sync API; nothing is ever downloaded. Chainlit's page
asks an unreachable CDN for fonts, so tests wait for elements, never for the
network to go idle, and every wait has a bound.
"""

from __future__ import annotations

import shutil

import pytest
from e2e_server import CHROMIUM, CHROMIUM_ARGS, open_chat, running_server


@pytest.fixture(scope="session")
def server_data(tmp_path_factory):
    """The shared server's data folder."""
    return tmp_path_factory.mktemp("qec-data")


@pytest.fixture(scope="session")
def server(server_data):
    """The base URL of the shared server (local mode, tiny model, fresh data)."""
    data_dir = server_data
    with running_server(data_dir) as url:
        yield url
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


@pytest.fixture
def page(browser, server):
    page = open_chat(browser, server)
    try:
        yield page
    finally:
        page.context.close()
