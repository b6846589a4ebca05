"""The edit history: conversations, immutable image nodes, the movable head, jobs.

Owns every rule of the tree (git is the model): nodes are numbered 1, 2, 3... per
conversation and never changed; the head is the one movable pointer and moves by
compare-and-swap; undo/redo/checkout never delete anything; a job's result node, the
head move and the job's success commit in one transaction. Knows nothing of
chainlit, torch or how an image was made: callers hand in PIL images or bytes.
"""

from __future__ import annotations

import io
import json
import os
import socket
import uuid
from typing import Iterable, Optional, Union

from PIL import Image
from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from . import db, export
from .blobs import BlobStore
from .images import decode, encode_png, pixels_only
from .errors import BadImage, HistoryError, JobStateError, NotFound, NothingToRedo, NothingToUndo
from .models import (
    FINAL_STATES,
    Conversation,
    ConversationRow,
    Job,
    JobRow,
    Node,
    NodeInputRow,
    NodeRow,
    utcnow,
)

ImageLike = Union[Image.Image, bytes]
MAX_NUMBER = 2**31 - 1  # larger numbers name no node (and do not fit every database)
# host:pid:token; the token tells this process from an earlier one that had its pid.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
CRASH_REASON = (
    "The server stopped while this was running, so no image was made. "
    "Send the message again to retry."
)
_CAS_RETRIES = 50


class Store:
    """One database plus one blob folder. Every method is keyword-safe and thread-safe."""

    def __init__(self, engine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    # ---- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, *, database_url: str, blob_dir: str | os.PathLike) -> "Store":
        """Open, creating what is missing. Jobs are left alone: the process that runs
        them calls ``recover_interrupted_jobs`` once at start-up."""
        engine = db.make_engine(database_url)
        db.create_tables(engine)
        return cls(engine, BlobStore(blob_dir))

    def close(self) -> None:
        self.engine.dispose()

    # ---- conversations --------------------------------------------------------------

    def create_conversation(self, *, owner: str, title: Optional[str] = None,
                            id: Optional[str] = None) -> Conversation:
        row = ConversationRow(owner=owner, title=title)
        if id is not None:
            row.id = id
        with db.write_session(self.engine) as s:
            s.add(row)
            s.flush()
            return Conversation.from_row(row)

    def ensure_conversation(self, conversation_id: str, *, owner: str,
                            title: Optional[str] = None) -> Conversation:
        """The conversation with this id, created for ``owner`` if missing.

        Someone else's conversation under that id is reported as missing.
        """
        try:
            return self.conversation(conversation_id, owner=owner)
        except NotFound:
            pass
        try:
            return self.create_conversation(owner=owner, title=title, id=conversation_id)
        except IntegrityError:  # created meanwhile, or taken by another owner
            return self.conversation(conversation_id, owner=owner)

    def conversation(self, conversation_id: str, *, owner: Optional[str] = None) -> Conversation:
        """The conversation; with ``owner``, someone else's is reported as missing."""
        with db.read_session(self.engine) as s:
            return Conversation.from_row(self._conv(s, conversation_id, owner))

    def conversations(self, *, owner: str) -> list[Conversation]:
        with db.read_session(self.engine) as s:
            rows = s.exec(
                select(ConversationRow)
                .where(ConversationRow.owner == owner)
                .order_by(ConversationRow.updated_at.desc())
            ).all()
            return [Conversation.from_row(r) for r in rows]

    def rename_conversation(self, conversation_id: str, title: str) -> Conversation:
        with db.write_session(self.engine) as s:
            row = self._conv(s, conversation_id)
            row.title = title
            row.updated_at = utcnow()
            s.add(row)
            s.flush()
            return Conversation.from_row(row)

    def update_settings(self, conversation_id: str, settings: dict) -> Conversation:
        with db.write_session(self.engine) as s:
            row = self._conv(s, conversation_id)
            row.settings = json.dumps(settings, sort_keys=True)
            s.add(row)
            s.flush()
            return Conversation.from_row(row)

    def update_meta(self, conversation_id: str, meta: dict) -> Conversation:
        """Merge ``meta`` into the conversation's free-form metadata."""
        with db.write_session(self.engine) as s:
            row = self._conv(s, conversation_id)
            row.meta = json.dumps({**json.loads(row.meta or "{}"), **meta}, sort_keys=True, default=str)
            s.add(row)
            s.flush()
            return Conversation.from_row(row)

    def delete_conversation(self, conversation_id: str) -> int:
        """Remove the conversation's rows, then every blob no other node uses.

        Returns the number of blob files removed. The files go inside the same write
        transaction, so (on SQLite, whose writers queue) no other conversation can be
        adding the same picture meanwhile; a crash part-way leaves an unused file,
        never a row without its file.
        """
        with db.write_session(self.engine) as s:
            self._conv(s, conversation_id)
            shas = set(s.exec(select(NodeRow.sha256).where(NodeRow.conversation_id == conversation_id)).all())
            masks = self._masks_of(s, conversation_id)
            for table in (NodeInputRow, NodeRow, JobRow):
                s.exec(delete(table).where(table.conversation_id == conversation_id))
            s.exec(delete(ConversationRow).where(ConversationRow.id == conversation_id))
            still_used = set(s.exec(select(NodeRow.sha256).where(NodeRow.sha256.in_(shas))).all()) if shas else set()
            # A mask is still used when any other conversation's params or meta name it
            # (rare, so a text scan; masks are content-addressed like images).
            still_used |= {m for m in masks if self._mask_used_elsewhere(s, m)}
            s.flush()
            gone = (shas | masks) - still_used
            for sha in gone:
                self.blobs.delete(sha)
            return len(gone)

    # ---- nodes ----------------------------------------------------------------------

    def add_node(
        self,
        conversation_id: str,
        image: ImageLike,
        *,
        kind: str,
        parent: Optional[int] = None,
        inputs: Iterable[int] = (),
        instruction: str = "",
        prompt: str = "",
        params: Optional[dict] = None,
        move_head: bool = True,
    ) -> Node:
        """Store ``image`` as a new node; with ``move_head`` it becomes the head."""
        sha, width, height, data = self._put_image(image)
        with db.write_session(self.engine) as s:
            row = self._insert_node(
                s, conversation_id, sha=sha, width=width, height=height, kind=kind,
                parent=parent, inputs=list(inputs), instruction=instruction,
                prompt=prompt, params=params or {}, move_head=move_head, data=data,
            )
            return Node.from_row(row, list(inputs))

    def node(self, conversation_id: str, number: int) -> Node:
        with db.read_session(self.engine) as s:
            return self._node(s, conversation_id, number)

    def nodes(self, conversation_id: str) -> list[Node]:
        with db.read_session(self.engine) as s:
            self._conv(s, conversation_id)
            rows = s.exec(
                select(NodeRow).where(NodeRow.conversation_id == conversation_id).order_by(NodeRow.number)
            ).all()
            inputs = self._inputs_of(s, conversation_id)
            return [Node.from_row(r, inputs.get(r.number, [])) for r in rows]

    def head(self, conversation_id: str) -> Optional[Node]:
        with db.read_session(self.engine) as s:
            conv = self._conv(s, conversation_id)
            return None if conv.head is None else self._node(s, conversation_id, conv.head)

    def lineage(self, conversation_id: str, number: Optional[int] = None) -> list[Node]:
        """Root first, ending at ``number`` (default: the head); [] for an empty conversation."""
        by_number = {n.number: n for n in self.nodes(conversation_id)}
        if number is None:
            number = self.conversation(conversation_id).head
            if number is None:
                return []
        if number not in by_number:
            raise self._no_such(number, by_number)
        chain: list[Node] = []
        current: Optional[int] = number
        while current is not None:
            n = by_number[current]
            chain.append(n)
            current = n.parent_number
        return chain[::-1]

    def children(self, conversation_id: str, number: int) -> list[Node]:
        return [n for n in self.nodes(conversation_id) if n.parent_number == number]

    def image(self, node: Node) -> Image.Image:
        """The node's image, verified against its hash."""
        img = Image.open(io.BytesIO(self.blobs.get(node.sha256)))
        img.load()
        return img

    def image_bytes(self, node: Node) -> bytes:
        return self.blobs.get(node.sha256)

    # ---- head moves -----------------------------------------------------------------

    def undo(self, conversation_id: str, steps: int = 1) -> Node:
        """Move the head to its parent (``steps`` times); redo can walk back down."""
        if steps < 1:
            raise HistoryError("Undo needs a number of steps of at least 1.")

        def plan(conv: ConversationRow, nodes: dict[int, NodeRow]):
            if conv.head is None:
                raise NothingToUndo("There is nothing to undo yet: no image has been made.")
            head, path = conv.head, json.loads(conv.redo_path)
            for done in range(steps):
                parent = nodes[head].parent_number
                if parent is None:
                    if done == 0:
                        raise NothingToUndo(
                            f"Nothing to undo: #{head} is where this line of images starts.")
                    raise NothingToUndo(
                        f"Only {done} step(s) can be undone from #{conv.head}: "
                        f"#{head} is where this line of images starts.")
                path.append(head)
                head = parent
            return head, path

        return self._move_head(conversation_id, plan)

    def redo(self, conversation_id: str, steps: int = 1) -> Node:
        """Walk back down exactly the path undo came up (``steps`` times, all or none)."""
        if steps < 1:
            raise HistoryError("Redo needs a number of steps of at least 1.")

        def plan(conv: ConversationRow, nodes: dict[int, NodeRow]):
            head, path = conv.head, json.loads(conv.redo_path)
            for done in range(steps):
                nxt = path.pop() if path else None
                if nxt is None or nxt not in nodes or nodes[nxt].parent_number != head:
                    if done == 0:
                        raise NothingToRedo("There is nothing to redo.")
                    raise NothingToRedo(f"Only {done} step(s) can be redone from #{conv.head}.")
                head = nxt
            return head, path

        return self._move_head(conversation_id, plan)

    def checkout(self, conversation_id: str, number: int) -> Node:
        """Point the head at any node of this conversation; the next edit branches there."""

        def plan(conv: ConversationRow, nodes: dict[int, NodeRow]):
            if number not in nodes:
                raise self._no_such(number, nodes)
            if number == conv.head:
                return number, json.loads(conv.redo_path)
            return number, []

        return self._move_head(conversation_id, plan)

    # ---- jobs -----------------------------------------------------------------------

    def create_job(self, conversation_id: str, *, kind: str, request: Optional[dict] = None) -> Job:
        """A queued job, owned by this process (whose queue will run it)."""
        with db.write_session(self.engine) as s:
            self._conv(s, conversation_id)
            row = JobRow(conversation_id=conversation_id, kind=kind, worker=WORKER_ID,
                         request=json.dumps(request or {}, sort_keys=True, default=str))
            s.add(row)
            s.flush()
            return Job.from_row(row)

    def job(self, job_id: str, *, owner: Optional[str] = None) -> Job:
        with db.read_session(self.engine) as s:
            row = s.get(JobRow, job_id)
            if row is None or (owner is not None and self._conv_owner(s, row.conversation_id) != owner):
                raise NotFound("There is no such job.")
            return Job.from_row(row)

    def jobs(self, conversation_id: str, *, status: Optional[str] = None) -> list[Job]:
        with db.read_session(self.engine) as s:
            q = select(JobRow).where(JobRow.conversation_id == conversation_id)
            if status is not None:
                q = q.where(JobRow.status == status)
            return [Job.from_row(r) for r in s.exec(q.order_by(JobRow.created_at)).all()]

    def start_job(self, job_id: str) -> Job:
        return self._transition(job_id, ("queued",), "running", started_at=utcnow())

    def fail_job(self, job_id: str, error: str) -> Job:
        return self._transition(job_id, ("queued", "running"), "failed", error=error, finished_at=utcnow())

    def cancel_job(self, job_id: str, reason: str = "Stopped by the user.") -> Job:
        return self._transition(job_id, ("queued", "running"), "cancelled", error=reason, finished_at=utcnow())

    def finish_job(
        self,
        job_id: str,
        image: ImageLike,
        *,
        kind: str,
        parent: Optional[int] = None,
        inputs: Iterable[int] = (),
        instruction: str = "",
        prompt: str = "",
        params: Optional[dict] = None,
        move_head: bool = True,
    ) -> Node:
        """Commit the result node, move the head and mark the job succeeded, atomically."""
        sha, width, height, data = self._put_image(image)
        with db.write_session(self.engine) as s:
            job = s.get(JobRow, job_id)
            if job is None:
                raise NotFound("There is no such job.")
            if job.status != "running":
                raise JobStateError(f"This job is {job.status}; its result was not saved.")
            row = self._insert_node(
                s, job.conversation_id, sha=sha, width=width, height=height, kind=kind,
                parent=parent, inputs=list(inputs), instruction=instruction, prompt=prompt,
                params=params or {}, move_head=move_head, data=data,
            )
            # Conditional: a cancel committed meanwhile (by another connection) wins,
            # and the whole transaction, node included, rolls back.
            done = s.exec(update(JobRow).where(JobRow.id == job_id, JobRow.status == "running")
                          .values(status="succeeded", node_number=row.number, finished_at=utcnow()))
            if done.rowcount != 1:
                raise JobStateError("This job was stopped; its result was not saved.")
            return Node.from_row(row, list(inputs))

    def recover_interrupted_jobs(self) -> int:
        """Fail the jobs whose process is gone: they will never run or finish.

        A job belongs to the process that queued it (``host:pid``). On this host, a job
        whose process no longer exists was cut short by a crash or a restart; jobs of
        live processes, and of other hosts sharing the database, are left alone.
        """
        with db.write_session(self.engine) as s:
            open_jobs = s.exec(select(JobRow.id, JobRow.worker)
                               .where(JobRow.status.in_(("running", "queued")))).all()
            dead = [job_id for job_id, worker in open_jobs if not _worker_alive(worker)]
            if dead:
                s.exec(update(JobRow).where(JobRow.id.in_(dead),
                                            JobRow.status.in_(("running", "queued")))
                       .values(status="failed", error=CRASH_REASON, finished_at=utcnow()))
            return len(dead)

    # ---- export ---------------------------------------------------------------------

    def export_image(self, conversation_id: str, number: Optional[int] = None,
                     fmt: str = "png", embed_recipe: bool = True) -> bytes:
        """The node (default: the head) as PNG, JPEG or WebP, without upload metadata."""
        return export.export_image(self, conversation_id, number, fmt, embed_recipe)

    def export_history(self, conversation_id: str) -> bytes:
        """A zip of every image, ``recipe.json`` of the whole tree and a contact sheet."""
        return export.export_history(self, conversation_id)

    # ---- masks ----------------------------------------------------------------------

    def put_mask(self, mask: Image.Image) -> str:
        """Keep a painted region (mode L, white = may change) as a blob; returns its sha256.

        Nodes name it in their params (``params["request"]["region"]``) and the
        conversation's meta names a region waiting for the next instruction; both keep
        it alive until the conversation is deleted.
        """
        return self.blobs.put(encode_png(mask.convert("L")))

    def mask(self, sha: str) -> Image.Image:
        return decode(self.blobs.get(sha)).convert("L")

    # ---- internals ------------------------------------------------------------------

    def _put_image(self, image: ImageLike) -> tuple[str, int, int, bytes]:
        img = decode(image) if isinstance(image, (bytes, bytearray, memoryview)) else image
        if not isinstance(img, Image.Image):
            raise BadImage("Only images can be stored.")
        clean = pixels_only(img)
        data = encode_png(clean)
        return self.blobs.put(data), clean.width, clean.height, data

    def _insert_node(self, s, conversation_id: str, *, sha, width, height, kind, parent,
                     inputs, instruction, prompt, params, move_head, data: bytes) -> NodeRow:
        conv = self._conv(s, conversation_id)
        if not self.blobs.exists(sha):
            # A deletion elsewhere removed this content between our write and this row
            # (the same picture in another conversation): write it again, under the lock.
            self.blobs.put(data)
        existing = set(s.exec(select(NodeRow.number).where(NodeRow.conversation_id == conversation_id)).all())
        for n in ([parent] if parent is not None else []) + list(inputs):
            if n not in existing:
                raise self._no_such(n, existing)
        # An atomic increment: two writers never get the same number, on SQLite or Postgres.
        s.exec(update(ConversationRow).where(ConversationRow.id == conversation_id)
               .values(next_number=ConversationRow.next_number + 1))
        s.refresh(conv)
        number = conv.next_number - 1
        row = NodeRow(conversation_id=conversation_id, number=number, parent_number=parent,
                      kind=kind, sha256=sha, width=width, height=height,
                      instruction=instruction, prompt=prompt,
                      params=json.dumps(params, sort_keys=True, default=str))
        s.add(row)
        for pos, n in enumerate(inputs, start=1):
            s.add(NodeInputRow(conversation_id=conversation_id, node_number=number,
                               position=pos, input_number=n))
        values: dict = {"updated_at": utcnow()}
        if move_head:
            values.update(head=number, redo_path="[]", version=ConversationRow.version + 1)
        s.exec(update(ConversationRow).where(ConversationRow.id == conversation_id).values(**values))
        s.flush()
        return row

    def _move_head(self, conversation_id: str, plan) -> Node:
        """Read, plan, then swap the head only if nobody moved it meanwhile; else retry."""
        for _ in range(_CAS_RETRIES):
            with db.read_session(self.engine) as s:
                conv = self._conv(s, conversation_id)
                nodes = {r.number: r for r in s.exec(
                    select(NodeRow).where(NodeRow.conversation_id == conversation_id)).all()}
                version = conv.version
                new_head, path = plan(conv, nodes)
            with db.write_session(self.engine) as s:
                result = s.exec(
                    update(ConversationRow)
                    .where(ConversationRow.id == conversation_id, ConversationRow.version == version)
                    .values(head=new_head, redo_path=json.dumps(path),
                            version=version + 1, updated_at=utcnow())
                )
                if result.rowcount == 1:
                    return self._node(s, conversation_id, new_head)
        raise HistoryError("The image history is busy; try again in a moment.")

    def _transition(self, job_id: str, sources: tuple, target: str, **values) -> Job:
        with db.write_session(self.engine) as s:
            result = s.exec(update(JobRow).where(JobRow.id == job_id, JobRow.status.in_(sources))
                            .values(status=target, **values))
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound("There is no such job.")
            if result.rowcount != 1:
                raise JobStateError(f"This job is already {row.status}.")
            s.refresh(row)
            return Job.from_row(row)

    @staticmethod
    def _conv(s, conversation_id: str, owner: Optional[str] = None) -> ConversationRow:
        row = s.get(ConversationRow, conversation_id) if isinstance(conversation_id, str) else None
        if row is None or (owner is not None and row.owner != owner):
            raise NotFound("There is no such conversation.")
        return row

    @staticmethod
    def _masks_of(s, conversation_id: str) -> set[str]:
        found = set()
        for params in s.exec(select(NodeRow.params).where(NodeRow.conversation_id == conversation_id)).all():
            sha = (json.loads(params or "{}").get("request") or {}).get("region")
            if isinstance(sha, str):
                found.add(sha)
        conv = s.get(ConversationRow, conversation_id)
        pending = (json.loads(conv.meta or "{}").get("region") or {}).get("sha") if conv is not None else None
        if isinstance(pending, str):
            found.add(pending)
        return found

    @staticmethod
    def _mask_used_elsewhere(s, sha: str) -> bool:
        like = f"%{sha}%"
        node = s.exec(select(NodeRow.number).where(NodeRow.params.like(like)).limit(1)).first()
        conv = s.exec(select(ConversationRow.id).where(ConversationRow.meta.like(like)).limit(1)).first()
        return node is not None or conv is not None

    @staticmethod
    def _conv_owner(s, conversation_id: str) -> Optional[str]:
        row = s.get(ConversationRow, conversation_id)
        return None if row is None else row.owner

    def _node(self, s, conversation_id: str, number: int) -> Node:
        self._conv(s, conversation_id)
        row = None if not isinstance(number, int) or not 1 <= number <= MAX_NUMBER else s.exec(
            select(NodeRow).where(NodeRow.conversation_id == conversation_id,
                                  NodeRow.number == number)).first()
        if row is None:
            latest = s.exec(select(func.max(NodeRow.number))
                            .where(NodeRow.conversation_id == conversation_id)).one()
            raise _no_such_message(number, latest)
        inputs = s.exec(select(NodeInputRow.input_number)
                        .where(NodeInputRow.conversation_id == conversation_id,
                               NodeInputRow.node_number == number)
                        .order_by(NodeInputRow.position)).all()
        return Node.from_row(row, list(inputs))

    @staticmethod
    def _inputs_of(s, conversation_id: str) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for r in s.exec(select(NodeInputRow).where(NodeInputRow.conversation_id == conversation_id)
                        .order_by(NodeInputRow.node_number, NodeInputRow.position)).all():
            out.setdefault(r.node_number, []).append(r.input_number)
        return out

    @staticmethod
    def _no_such(number, existing) -> NotFound:
        return _no_such_message(number, max(existing) if existing else None)


def _no_such_message(number, latest: Optional[int]) -> NotFound:
    if latest is None:
        return NotFound(f"There is no #{number} in this conversation; it has no images yet.")
    return NotFound(f"There is no #{number} in this conversation; the latest is #{latest}.")


def _worker_alive(worker: Optional[str]) -> bool:
    """Whether the process named ``host:pid:token`` may still be running its jobs."""
    parts = (worker or "").split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # unknown owner: nobody will finish it
    host, pid, _token = parts[0], int(parts[1]), parts[2]
    if host != socket.gethostname():
        return True  # another machine's job: not ours to judge
    if pid == os.getpid():
        return worker == WORKER_ID  # same pid, other token: an earlier process, gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
