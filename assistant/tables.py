"""The chat's own tables beside the edit history: users, messages (steps), elements.

Owns the schema that lets Chainlit's sidebar list threads and replay them after a
restart, on the project's database rather than Chainlit's built-in SQL layer. A
thread is a conversation of ``sessions`` (same id); steps and elements keep
Chainlit's dicts whole in a JSON column, so a new Chainlit field needs no
migration. Rows go when their conversation goes (foreign keys, cascade).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from sessions.models import utcnow


class UserRow(SQLModel, table=True):
    __tablename__ = "users"

    identifier: str = Field(primary_key=True, max_length=255)
    display_name: Optional[str] = Field(default=None, max_length=255)
    # "scrypt$n$r$p$salt$hash"; None for users who sign in another way (local mode).
    password_hash: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    meta: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: datetime = Field(default_factory=utcnow)


class StepRow(SQLModel, table=True):
    __tablename__ = "chat_steps"

    id: str = Field(primary_key=True, max_length=64)
    thread_id: str = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE", max_length=64)
    created_at: str = Field(default="", max_length=40, index=True)  # Chainlit's ISO string: sorts
    data: str = Field(sa_column=Column(Text, nullable=False))


class ElementRow(SQLModel, table=True):
    __tablename__ = "chat_elements"

    id: str = Field(primary_key=True, max_length=64)
    thread_id: str = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE", max_length=64)
    for_id: Optional[str] = Field(default=None, index=True, max_length=64)
    data: str = Field(sa_column=Column(Text, nullable=False))


class FeedbackRow(SQLModel, table=True):
    __tablename__ = "chat_feedback"

    id: str = Field(primary_key=True, max_length=64)
    thread_id: str = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE", max_length=64)
    for_id: str = Field(index=True, max_length=64)
    value: int
    comment: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
