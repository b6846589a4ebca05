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
