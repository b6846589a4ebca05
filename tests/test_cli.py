"""The `qwen-edit-chat` command line on the tiny backend: generate, edit, replay, errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assistant.cli import build_parser, main
from pipelines import EditRequest, get_backend

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "qwen-edit-chat"


def picture(path: Path, w: int, h: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_generate_saves_the_image_and_prints_the_seed(tmp_path, capsys):
    out = tmp_path / "fox.png"
    code = main(["generate", "a red fox in snow", "-o", str(out), "--backend", "tiny",
                 "--seed", "1234", "--steps", "2", "--size", "64x48"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert Image.open(out).size == (64, 48)
    assert "seed 1234" in captured.out.splitlines()
    assert str(out) in captured.out


def test_generate_without_a_seed_prints_the_one_it_drew(tmp_path, capsys):
    out = tmp_path / "a.png"
    assert main(["generate", "a lighthouse", "-o", str(out), "--backend", "tiny",
                 "--steps", "2", "--size", "32x32"]) == 0
    seeds = [line for line in capsys.readouterr().out.splitlines() if line.startswith("seed ")]
    assert len(seeds) == 1 and seeds[0].split()[1].isdigit()


def test_edit_with_a_reference_keeps_picture_1_size(tmp_path, capsys):
    photo = picture(tmp_path / "photo.png", 96, 64, seed=1)
    ref = picture(tmp_path / "ref.png", 40, 40, seed=2)
    out = tmp_path / "sub" / "out.png"
    code = main(["edit", str(photo), str(ref), "make the background darker and add rain",
                 "-o", str(out), "--backend", "tiny", "--seed", "7", "--steps", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert Image.open(out).size == (96, 64)
    assert "seed 7" in captured.out


def test_edit_at_an_asked_size(tmp_path, capsys):
    photo = picture(tmp_path / "photo.jpg", 80, 60)
    out = tmp_path / "out.png"
    assert main(["edit", str(photo), "make it night", "-o", str(out), "--backend", "tiny",
                 "--steps", "2", "--size", "48x32"]) == 0
    assert Image.open(out).size == (48, 32)


@pytest.mark.parametrize("make_args, expected", [
    (lambda d: ["edit", str(d / "missing.jpg"), "add rain"], "no such image file"),
    (lambda d: ["edit", str(d / "notes.png"), "add rain"], "is not an image"),
    (lambda d: ["edit", "make it night"], "at least one image"),
    (lambda d: ["replay", str(d / "notes.png"), "-o", str(d / "r")], "not a zip"),
    (lambda d: ["generate", "x", "--steps", "1", "--backend", "tiny"], "at least 2 steps"),
])
def test_errors_are_one_clear_line_and_exit_2(tmp_path, capsys, make_args, expected):
    (tmp_path / "notes.png").write_text("just text")
    code = main(make_args(tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in err
    assert err.startswith("qwen-edit-chat: error:") and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_parser_dispatches_by_name():
    from assistant.cli import COMMANDS

    parser = build_parser()
    assert {"generate", "edit", "replay"} <= set(COMMANDS)
    args = parser.parse_args(["edit", "a.png", "b.png", "merge them", "--size", "64x32"])
    assert args.items == ["a.png", "b.png", "merge them"] and args.size == (64, 32)
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "x", "--size", "big"])


def test_console_script_runs_and_does_not_load_chainlit(tmp_path):
    if not SCRIPT.exists():
        pytest.skip("console script not installed (pip install -e .)")
    out = tmp_path / "fox.png"
    done = subprocess.run(
        [str(SCRIPT), "generate", "a red fox in snow", "-o", str(out), "--backend", "tiny",
         "--seed", "99", "--steps", "2", "--size", "32x32"],
        capture_output=True, text=True, timeout=150, env=os.environ.copy(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "seed 99" in done.stdout and Image.open(out).size == (32, 32)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, assistant.cli; "
         "print(sorted(m for m in ('chainlit', 'torch', 'diffusers', 'openai') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert probe.stdout.strip() == "[]", probe.stderr


# -- replay -----------------------------------------------------------------------------


def history_zip(path: Path, upload: Image.Image, edited: Image.Image, params: dict) -> Path:
    """A two-node history (upload #1, edit #2) in the export format."""
    nodes, files = [], {}
    for number, kind, img, parent, inputs in ((1, "upload", upload, None, []),
                                              (2, "edit", edited, 1, [1])):
        data = png_bytes(img)
        name = f"images/{number:04d}-{kind}.png"
        files[name] = data
        nodes.append({
            "number": number, "parent": parent, "kind": kind, "inputs": inputs,
            "instruction": None if kind == "upload" else "add rain",
            "prompt": None if kind == "upload" else "add rain",
            "params": {} if kind == "upload" else params,
            "sha256": hashlib.sha256(data).hexdigest(),
            "width": img.width, "height": img.height, "file": name,
            "created_at": "2025-01-01T00:00:00Z",
        })
    recipe = {"format": "qwen-edit-chat/history", "version": 1,
              "conversation": {"id": "c1", "title": "rain", "owner": "local", "head": 2},
              "nodes": nodes}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recipe.json", json.dumps(recipe))
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("contact-sheet.png", files["images/0001-upload.png"])
    return path


@pytest.fixture
def recorded_edit(tmp_path):
    rng = np.random.default_rng(5)
    upload = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    tiny = get_backend("tiny")
    result = tiny.edit(EditRequest("add rain", images=(upload,), seed=321, steps=2,
                                   negative_prompt=" ", true_cfg_scale=4.0))
    params = {"seed": 321, "steps": 2, "true_cfg_scale": 4.0, "negative_prompt": " ",
              "width": None, "height": None, "backend": "tiny", "model": "tiny",
              "info": result.info}
    return upload, result.image, params


def test_replay_reproduces_an_exported_history(tmp_path, capsys, recorded_edit):
    upload, edited, params = recorded_edit
    zpath = history_zip(tmp_path / "history.zip", upload, edited, params)
    outdir = tmp_path / "replayed"
    code = main(["replay", str(zpath), "-o", str(outdir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "#2 edit: reproduced" in captured.out
    assert "1 of 1 model-made images reproduced exactly." in captured.out
    assert (outdir / "0001-upload.png").read_bytes() == png_bytes(upload)
    again = np.asarray(Image.open(outdir / "0002-edit.png").convert("RGB"))
    assert (again == np.asarray(edited)).all()


def test_replay_reports_a_difference(tmp_path, capsys, recorded_edit):
    upload, edited, params = recorded_edit
    changed = np.asarray(edited).copy()
    changed[0, 0] = (changed[0, 0].astype(int) + 40) % 256
    zpath = history_zip(tmp_path / "history.zip", upload, Image.fromarray(changed), params)
    code = main(["replay", str(zpath), "-o", str(tmp_path / "out"), "--backend", "tiny"])
    out = capsys.readouterr().out
    assert code == 1
    assert "#2 edit: differs (max abs difference" in out
    assert "0 of 1 model-made images reproduced exactly; 1 differ." in out


def test_replay_of_a_foreign_zip_is_refused(tmp_path, capsys):
    zpath = tmp_path / "other.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("recipe.json", json.dumps({"format": "something-else", "version": 1, "nodes": []}))
    assert main(["replay", str(zpath), "-o", str(tmp_path / "o")]) == 2
    assert "not a qwen-edit-chat history" in capsys.readouterr().err


def test_replay_runs_exact_operations_and_regions_as_the_chat_did(tmp_path, capsys):
    """A history made by the chat: an upload, an exact rotation, an edit in a painted region."""
    from assistant.queue import JobQueue
    from assistant.router import route
    from assistant.service import BackendPool, ChatService, ChatSettings
    from pipelines import get_backend
    from sessions import Store

    store = Store.open(database_url=f"sqlite:///{tmp_path}/t.db", blob_dir=tmp_path / "blobs")
    queue = JobQueue(workers=1)
    tiny = get_backend("tiny")
    service = ChatService(store, BackendPool("tiny", lambda n, m: tiny), queue)
    try:
        conv = store.create_conversation(owner="ann").id
        photo = Image.open(ROOT / "tests" / "fixtures" / "chelsea.png").convert("RGB")
        (up,) = service.add_uploads(conv, [("cat.png", png_bytes(photo))])
        store.checkout(conv, up.number)
        out = service.apply(conv, route("rotate it 90 degrees", has_image=True))
        assert out.node.kind == "op"
        mask = Image.new("L", (30, 45), 0)
        mask.paste(255, (5, 5, 20, 20))
        service.set_region(conv, png_bytes(mask.convert("RGB")))
        out = service.apply(conv, route("add a hat", has_image=True), settings=ChatSettings(steps=2, seed=5))
        out.runs[0].wait(120)
        zpath = tmp_path / "history.zip"
        zpath.write_bytes(store.export_history(conv))
    finally:
        queue.shutdown()
        store.close()
    code = main(["replay", str(zpath), "-o", str(tmp_path / "again"), "--backend", "tiny"])
    out = capsys.readouterr().out
    assert "#2 op: reproduced" in out and "#3 edit: reproduced" in out, out
    assert code == 0
