"""`qwen-edit-chat serve` start-up checks that need no browser."""

from __future__ import annotations

import os
import subprocess
import sys


def test_multi_user_mode_refuses_to_start_without_a_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CHAINLIT_AUTH_SECRET"}
    env.update(QEC_MODE="multi", QEC_DATA_DIR=str(tmp_path), QEC_BACKEND="tiny")
    out = subprocess.run([sys.executable, "-m", "assistant", "serve", "--port", "1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "CHAINLIT_AUTH_SECRET" in out.stderr and "chainlit create-secret" in out.stderr


def test_local_mode_keeps_one_secret(tmp_path):
    from assistant.runtime import auth_secret

    first = auth_secret(tmp_path)
    assert len(first) > 40 and auth_secret(tmp_path) == first
    assert oct((tmp_path / "auth-secret").stat().st_mode)[-3:] == "600"


def test_multi_user_mode_writes_no_secret_of_its_own(tmp_path, monkeypatch):
    """The operator's CHAINLIT_AUTH_SECRET signs tokens; no unused auth-secret file appears."""
    import argparse

    import chainlit.cli

    from assistant import config, serve

    monkeypatch.setenv("QEC_MODE", "multi")
    monkeypatch.setenv("QEC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "operator-chosen-secret-" + "x" * 40)
    monkeypatch.setattr(chainlit.cli, "run_chainlit", lambda target: None)  # stop before serving
    # What run() sets for Chainlit is put back afterwards.
    import chainlit.config as chainlit_config
    import chainlit.server as chainlit_server

    for name in ("CHAINLIT_HOST", "CHAINLIT_PORT"):
        monkeypatch.setenv(name, "")
    monkeypatch.setattr(chainlit_config, "FILES_DIRECTORY", chainlit_config.FILES_DIRECTORY)
    monkeypatch.setattr(chainlit_server, "FILES_DIRECTORY", chainlit_server.FILES_DIRECTORY)
    monkeypatch.setattr(chainlit_config.config.run, "headless", chainlit_config.config.run.headless)
    monkeypatch.chdir(tmp_path)
    config.get_settings.cache_clear()
    try:
        assert serve.run(argparse.Namespace(host=None, port=None)) == 0
    finally:
        config.get_settings.cache_clear()
    assert not (tmp_path / "auth-secret").exists()
    assert os.environ["CHAINLIT_AUTH_SECRET"].startswith("operator-chosen-secret-")
