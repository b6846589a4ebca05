"""Table models of the edit history, and the plain objects the store hands out.

Owns the schema: conversations, nodes, node inputs (ordered Picture 1, 2, 3) and
jobs. Rows stay inside the store; callers get the frozen dataclasses at the bottom,
so nothing outside holds a live database object.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


class ConversationRow(SQLModel, table=True):
    __tablename__ = "conversations"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    owner: str = Field(index=True, max_length=255)
    title: Optional[str] = Field(default=None, max_length=500)
    head: Optional[int] = None  # node number; None until the first image
    # JSON list of node numbers undo came up through, nearest last.
    redo_path: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    next_number: int = 1  # numbers are never reused, even if a node were removed
    version: int = 0  # bumped by every head move: the compare-and-swap token
    settings: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    # Free-form metadata of whoever shows the conversation (the chat UI keeps its own here).
    meta: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class NodeRow(SQLModel, table=True):
    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("conversation_id", "number"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE")
    number: int
    parent_number: Optional[int] = None
    kind: str = Field(max_length=32)
    sha256: str = Field(index=True, max_length=64)
    width: int
    height: int
    instruction: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    prompt: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    params: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: datetime = Field(default_factory=utcnow)


class NodeInputRow(SQLModel, table=True):
    __tablename__ = "node_inputs"

    conversation_id: str = Field(
        foreign_key="conversations.id", primary_key=True, ondelete="CASCADE", max_length=64
    )
    node_number: int = Field(primary_key=True)
    position: int = Field(primary_key=True)  # 1 = Picture 1
    input_number: int


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=32)
    status: str = Field(default="queued", index=True, max_length=16)
    request: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    node_number: Optional[int] = None
    worker: Optional[str] = Field(default=None, max_length=255)  # "host:pid" whose queue runs it
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


# ---- what callers get --------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    id: str
    owner: str
    title: Optional[str]
    head: Optional[int]
    created_at: datetime
    updated_at: datetime
    settings: dict = field(default_factory=dict)
    redo_path: tuple = ()
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: ConversationRow) -> "Conversation":
        return cls(
            id=row.id, owner=row.owner, title=row.title, head=row.head,
            created_at=row.created_at, updated_at=row.updated_at,
            settings=json.loads(row.settings or "{}"),
            redo_path=tuple(json.loads(row.redo_path or "[]")),
            meta=json.loads(row.meta or "{}"),
        )


@dataclass(frozen=True)
class Node:
    conversation_id: str
    number: int
    parent_number: Optional[int]
    kind: str
    sha256: str
    width: int
    height: int
    instruction: str
    prompt: str
    params: dict
    input_numbers: list
    created_at: datetime

    @classmethod
    def from_row(cls, row: NodeRow, inputs: list[int]) -> "Node":
        return cls(
            conversation_id=row.conversation_id, number=row.number,
            parent_number=row.parent_number, kind=row.kind, sha256=row.sha256,
            width=row.width, height=row.height, instruction=row.instruction,
            prompt=row.prompt, params=json.loads(row.params or "{}"),
            input_numbers=list(inputs), created_at=row.created_at,
        )


JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    id: str
    conversation_id: str
    kind: str
    status: str
    request: dict
    error: Optional[str]
    node_number: Optional[int]
    created_at: datetime
    started_at: Optional[datetime]
    finished_at: Optional[datetime]

    @classmethod
    def from_row(cls, row: JobRow) -> "Job":
        return cls(
            id=row.id, conversation_id=row.conversation_id, kind=row.kind,
            status=row.status, request=json.loads(row.request or "{}"), error=row.error,
            node_number=row.node_number, created_at=row.created_at,
            started_at=row.started_at, finished_at=row.finished_at,
        )
