"""Settings: QEC_* variables and .env, defaults that need nothing set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from assistant.config import Settings


def test_defaults_need_nothing(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.data_dir == tmp_path / "data"  # made absolute at once
    assert s.resolved_database_url == f"sqlite:///{tmp_path}/data/qec.db"
    assert s.resolved_blob_dir == tmp_path / "data" / "blobs"
    assert (s.mode, s.host, s.port, s.workers) == ("local", "127.0.0.1", 8000, 1)
    qwen = s.backend_settings("qwen")
    assert (qwen["profile"], qwen["t2i_mode"], qwen["attention"]) == ("auto", "auto", "auto")
    assert (qwen["compile"], qwen["cache"]) == (False, "off")


def test_qwen_levers_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name, value in {"QEC_PROFILE": "fp8", "QEC_COMPILE": "1", "QEC_CACHE": "first-block",
                        "QEC_ATTENTION": "sage", "QEC_T2I_MODE": "canvas"}.items():
        monkeypatch.setenv(name, value)
    qwen = Settings().backend_settings("qwen")
    assert qwen["profile"] == "fp8" and qwen["compile"] is True and qwen["cache"] == "first-block"
    assert qwen["attention"] == "sage" and qwen["t2i_mode"] == "canvas"
    monkeypatch.setenv("QEC_PROFILE", "turbo")
    with pytest.raises(ValidationError):
        Settings()


def test_prefixed_environment_and_dotenv(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("QEC_PORT=9001\nQEC_MODE=multi\n")
    monkeypatch.setenv("QEC_DATABASE_URL", "postgresql+psycopg://u@db/qec")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ignored")  # Chainlit's name is not ours
    monkeypatch.setenv("QEC_BACKEND", "remote")
    monkeypatch.setenv("QEC_MODEL", "Qwen/Qwen-Image-Edit-2509")
    s = Settings()
    assert (s.port, s.mode, s.resolved_database_url) == (9001, "multi", "postgresql+psycopg://u@db/qec")
    assert s.backend_name() == "remote"
    assert s.backend_settings("remote")["model"] == "Qwen/Qwen-Image-Edit-2509"
    assert s.backend_settings("qwen", "local/folder")["model"] == "local/folder"
    assert s.backend_settings("tiny") == {}


def test_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("QEC_MODE", "everyone")
    with pytest.raises(ValidationError):
        Settings()


def test_tiny_gets_a_chosen_model_and_its_step_delay_but_not_the_real_models_name(monkeypatch):
    from assistant.config import Settings

    s = Settings(model="Qwen/Qwen-Image-Edit-2511", tiny_step_delay_s=0.05)
    assert s.backend_settings("tiny") == {"step_delay_s": 0.05}
    assert s.backend_settings("tiny", "tiny-2.1") == {"model": "tiny-2.1", "step_delay_s": 0.05}
    assert Settings().backend_settings("tiny") == {}
