"""Writes tests/fixtures/data-v1/: a data folder made by the code of 2026-12-04, before
migrations existed (tables from ``create_all``, no ``alembic_version``).

Kept so upgrades are tested on data real installs have: two local-mode conversations
(an upload, an edit, a generation, a succeeded and a failed job, chat steps, an
element, feedback), and two accounts. Run once; the output is committed:
    .venv/bin/python tests/support/make_data_v1.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from sqlmodel import SQLModel  # noqa: E402

from assistant import tables, users  # noqa: E402
from sessions import Store, db  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "data-v1"


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    store = Store.open(database_url=f"sqlite:///{OUT / 'qec.db'}", blob_dir=OUT / "blobs")
    SQLModel.metadata.create_all(store.engine)
    photo = Image.open(ROOT / "tests" / "fixtures" / "chelsea.png").convert("RGB").resize((64, 48))

    conv = store.create_conversation(owner="local", title="A cat at night").id
    store.add_node(conv, photo, kind="upload", instruction="chelsea.png")
    job = store.create_job(conv, kind="edit", request={"prompt": "make it night", "inputs": [1]})
    store.start_job(job.id)
    store.finish_job(job.id, photo.point(lambda v: v // 3), kind="edit", parent=1, inputs=[1],
                     instruction="make it night", prompt="make it night",
                     params={"backend": "tiny", "seed": 7, "steps": 4})
    failed = store.create_job(conv, kind="edit", request={"prompt": "add rain", "inputs": [2]})
    store.fail_job(failed.id, "Stopped: the server restarted.")

    other = store.create_conversation(owner="local", title="A lighthouse").id
    store.add_node(other, Image.new("RGB", (48, 48), (30, 60, 90)), kind="generate",
                   instruction="a lighthouse", prompt="a lighthouse",
                   params={"backend": "tiny", "seed": 1, "steps": 4})

    with db.write_session(store.engine) as s:
        for i, (kind, text) in enumerate([("user_message", "make it night"),
                                          ("assistant_message", "#2 · edit of #1 · seed 7")]):
            step = {"id": f"step-{i}", "threadId": conv, "type": kind, "output": text,
                    "createdAt": f"2026-12-04T10:00:0{i}Z", "name": "local" if i == 0 else "Qwen Edit Chat"}
            s.add(tables.StepRow(id=step["id"], thread_id=conv, created_at=step["createdAt"],
                                 data=json.dumps(step)))
        s.add(tables.ElementRow(id="element-1", thread_id=conv, for_id="step-1", data=json.dumps(
            {"id": "element-1", "threadId": conv, "type": "image", "name": "#2",
             "url": f"/qec/images/{conv}/2.png", "forId": "step-1", "display": "inline"})))
        s.add(tables.FeedbackRow(id="feedback-1", thread_id=conv, for_id="step-1", value=1,
                                 comment="nice"))
        s.add(tables.UserRow(identifier="local", display_name="local"))
    users.add_user(store.engine, "alice", "alice-password-1")
    users.add_user(store.engine, "bob", "bob-password-22")
    store.close()
    for extra in OUT.glob("qec.db-*"):  # WAL files: everything is in the main file after close
        extra.unlink()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
