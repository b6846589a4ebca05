"""Community LoRAs through the chat's service on the tiny model: picked in the settings
(only those the server offers), recorded on the node with their file's sha256, and
asked for by name when a history is replayed."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.queue import JobQueue
from assistant.router import route
from assistant.service import BackendPool, ChatService, ChatSettings, settings_from_panel
from pipelines import get_backend
from sessions import HistoryError, Store

from .test_service import png

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from make_tiny_lora import make_tiny_lora  # noqa: E402


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    from diffusers import QwenImageTransformer2DModel
    from pipelines.tiny_model import ensure_tiny_model

    folder = ensure_tiny_model()
    transformer = QwenImageTransformer2DModel.from_pretrained(str(folder), subfolder="transformer")
    path = make_tiny_lora(tmp_path_factory.mktemp("loras") / "ink.safetensors", transformer, seed=1)
    return {"name": "ink", "source": str(path), "scale": 0.8}


def test_a_picked_lora_runs_and_is_recorded_then_replay_asks_for_it(tmp_path, lora, monkeypatch, capsys):
    tiny = get_backend("tiny", loras=[lora])
    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    queue = JobQueue(workers=1)
    service = ChatService(store, BackendPool("tiny", lambda n, m: tiny), queue)
    try:
        conv = store.create_conversation(owner="ann").id
        (up,) = service.add_uploads(conv, [("a.png", png("blue", (64, 48)))])
        store.checkout(conv, up.number)
        settings = ChatSettings(steps=2, seed=4, loras=("ink",))
        out = service.apply(conv, route("add a hat", has_image=True), settings=settings)
        with_lora = out.runs[0].wait(120).node
        (rec,) = with_lora.params["loras"]
        assert rec["name"] == "ink" and rec["scale"] == 0.8
        assert rec["sha256"] == hashlib.sha256(Path(lora["source"]).read_bytes()).hexdigest()
        from assistant.render import describe
        assert "LoRA ink ×0.8" in describe(with_lora)
        out = service.apply(conv, route("#1", has_image=True))
        out = service.apply(conv, route("add a hat", has_image=True), settings=ChatSettings(steps=2, seed=4))
        without = out.runs[0].wait(120).node
        assert without.params["loras"] == [] and without.sha256 != with_lora.sha256
        zpath = tmp_path / "h.zip"
        zpath.write_bytes(store.export_history(conv))
    finally:
        queue.shutdown()
        store.close()
    # Replay without the adapter configured: it says which one it needs.
    monkeypatch.delenv("QEC_LORAS", raising=False)
    from assistant import config
    config.get_settings.cache_clear()
    code = main(["replay", str(zpath), "-o", str(tmp_path / "out"), "--backend", "tiny"])
    err = capsys.readouterr().err
    assert code == 2 and "needs the LoRA 'ink'" in err and rec["sha256"][:12] in err


def test_only_the_offered_loras_can_be_picked():
    assert settings_from_panel({"loras": ["ink"]}, offered_loras=["ink", "rain"]).loras == ("ink",)
    with pytest.raises(HistoryError, match="offers the LoRAs: ink"):
        settings_from_panel({"loras": ["other"]}, offered_loras=["ink"])
    assert ChatSettings.from_dict({"loras": ["ink"]}).loras == ("ink",)
