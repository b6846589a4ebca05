"""Chainlit's data layer on the project's own tables.

Owns the mapping between Chainlit's threads, steps, elements, users and feedback
and our rows: a thread is a ``sessions`` conversation with the same id, its owner
is the user's identifier (which is also the persisted user's id), and steps and
elements are kept as Chainlit's own dicts. Images in resumed threads are served by
our route, so only elements with a URL or custom props are kept; bytes Chainlit
held for the session (previews, downloads) are not.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Dict, List, Optional

from chainlit.data.base import BaseDataLayer
from chainlit.data.utils import queue_until_user_message
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User
from sqlalchemy import delete, func
from sqlmodel import Session, select

from sessions import HistoryError, NotFound, Store, db
from sessions.models import ConversationRow

from .tables import ElementRow, FeedbackRow, StepRow, UserRow


def _iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class HistoryDataLayer(BaseDataLayer):
    def __init__(self, store: Store, delete_conversation=None) -> None:
        self.store = store
        self.engine = store.engine
        # The service's delete stops the conversation's jobs first; the store's alone does not.
        self._delete = delete_conversation or store.delete_conversation

    async def _run(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ---- users ------------------------------------------------------------------------

    async def get_user(self, identifier: str) -> Optional[PersistedUser]:
        return await self._run(self._get_user, identifier)

    def _get_user(self, identifier: str) -> Optional[PersistedUser]:
        with Session(self.engine) as s:
            row = s.get(UserRow, identifier)
            if row is None:
                return None
            return PersistedUser(id=row.identifier, identifier=row.identifier,
                                 display_name=row.display_name, metadata=json.loads(row.meta),
                                 createdAt=_iso(row.created_at))

    async def create_user(self, user: User) -> Optional[PersistedUser]:
        def create():
            with db.write_session(self.engine) as s:
                row = s.get(UserRow, user.identifier) or UserRow(identifier=user.identifier)
                row.display_name = user.display_name or row.display_name
                row.meta = json.dumps(user.metadata or {}, default=str)
                s.add(row)
            return self._get_user(user.identifier)

        return await self._run(create)

    # ---- threads ----------------------------------------------------------------------

    async def get_thread_author(self, thread_id: str) -> str:
        try:
            conv = await self._run(self.store.conversation, thread_id)
        except HistoryError:
            return ""
        return conv.owner

    async def update_thread(self, thread_id: str, name: Optional[str] = None,
                            user_id: Optional[str] = None, metadata: Optional[Dict] = None,
                            tags: Optional[List[str]] = None):
        def update():
            try:
                conv = self.store.conversation(thread_id)
            except NotFound:
                if user_id is None:
                    return  # nobody to own it yet; the chat start creates it
                conv = self.store.ensure_conversation(thread_id, owner=user_id)
            if user_id is not None and conv.owner != user_id:
                return  # never hand a conversation to someone else
            if name:
                self.store.rename_conversation(thread_id, name[:200])
            extra = dict(metadata or {})
            if tags is not None:
                extra["tags"] = tags
            if extra:
                self.store.update_meta(thread_id, extra)

        await self._run(update)

    async def delete_thread(self, thread_id: str):
        try:
            await self._run(self._delete, thread_id)
        except NotFound:
            pass

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter
                           ) -> PaginatedResponse[ThreadDict]:
        return await self._run(self._list_threads, pagination, filters)

    def _list_threads(self, pagination: Pagination, filters: ThreadFilter):
        owner = filters.userId
        if not owner:
            return PaginatedResponse(pageInfo=PageInfo(False, None, None), data=[])
        with Session(self.engine) as s:
            has_steps = select(StepRow.thread_id).distinct()
            q = (select(ConversationRow)
                 .where(ConversationRow.owner == owner, ConversationRow.id.in_(has_steps))
                 .order_by(ConversationRow.updated_at.desc(), ConversationRow.id))
            if filters.search:
                q = q.where(func.lower(ConversationRow.title).contains(filters.search.lower()))
            rows = s.exec(q).all()
        ids = [r.id for r in rows]
        start = ids.index(pagination.cursor) + 1 if pagination.cursor in ids else 0
        page = rows[start:start + pagination.first]
        data = [self._thread_dict(r, steps=[], elements=[]) for r in page]
        return PaginatedResponse(
            pageInfo=PageInfo(hasNextPage=start + pagination.first < len(rows),
                              startCursor=page[0].id if page else None,
                              endCursor=page[-1].id if page else None),
            data=data)

    async def get_thread(self, thread_id: str) -> Optional[ThreadDict]:
        return await self._run(self._get_thread, thread_id)

    def _get_thread(self, thread_id: str) -> Optional[ThreadDict]:
        with Session(self.engine) as s:
            row = s.get(ConversationRow, thread_id)
            if row is None:
                return None
            steps = [json.loads(r.data) for r in s.exec(
                select(StepRow).where(StepRow.thread_id == thread_id).order_by(StepRow.created_at)).all()]
            elements = [json.loads(r.data) for r in s.exec(
                select(ElementRow).where(ElementRow.thread_id == thread_id)).all()]
            feedback = {f.for_id: f for f in s.exec(
                select(FeedbackRow).where(FeedbackRow.thread_id == thread_id)).all()}
        for step in steps:
            if step.get("id") in feedback:
                f = feedback[step["id"]]
                step["feedback"] = {"id": f.id, "forId": f.for_id, "value": f.value, "comment": f.comment}
        return self._thread_dict(row, steps=steps, elements=elements)

    @staticmethod
    def _thread_dict(row: ConversationRow, *, steps, elements) -> ThreadDict:
        return {
            "id": row.id, "createdAt": _iso(row.created_at), "name": row.title,
            "userId": row.owner, "userIdentifier": row.owner,
            "tags": json.loads(row.meta or "{}").get("tags"),
            "metadata": json.loads(row.meta or "{}"), "steps": steps, "elements": elements,
        }

    # ---- steps ------------------------------------------------------------------------

    @queue_until_user_message()
    async def create_step(self, step_dict):
        await self._run(self._upsert_step, dict(step_dict))

    @queue_until_user_message()
    async def update_step(self, step_dict):
        await self._run(self._upsert_step, dict(step_dict))

    def _upsert_step(self, step: dict) -> None:
        thread_id = step.get("threadId")
        if not thread_id or not step.get("id"):
            return
        with db.write_session(self.engine) as s:
            if s.get(ConversationRow, thread_id) is None:
                return  # a step of a thread nobody owns yet: nothing to attach it to
            row = s.get(StepRow, step["id"])
            if row is None:
                row = StepRow(id=step["id"], thread_id=thread_id,
                              created_at=step.get("createdAt") or "", data="{}")
            elif row.thread_id != thread_id:
                return  # a step id is never moved to another thread
            merged = {**json.loads(row.data), **{k: v for k, v in step.items() if v is not None}}
            row.data = json.dumps(merged, default=str)
            s.add(row)

    @queue_until_user_message()
    async def delete_step(self, step_id: str):
        def delete_():
            with db.write_session(self.engine) as s:
                s.exec(delete(ElementRow).where(ElementRow.for_id == step_id))
                s.exec(delete(StepRow).where(StepRow.id == step_id))

        await self._run(delete_)

    async def get_favorite_steps(self, user_id: str):
        return []

    # ---- elements ---------------------------------------------------------------------

    @queue_until_user_message()
    async def create_element(self, element):
        data = element.to_dict()
        if not data.get("url") and data.get("type") != "custom":
            return  # session-held bytes (previews, downloads) do not outlive the session
        if data.get("type") == "custom":
            data["props"] = getattr(element, "props", None) or data.get("props")
        data = {k: v for k, v in data.items() if k not in ("path", "chainlitKey", "content")}

        def save():
            with db.write_session(self.engine) as s:
                if not element.thread_id or s.get(ConversationRow, element.thread_id) is None:
                    return
                row = s.get(ElementRow, element.id) or ElementRow(
                    id=element.id, thread_id=element.thread_id, data="{}")
                if row.thread_id != element.thread_id:
                    return
                row.for_id = data.get("forId")
                row.data = json.dumps(data, default=str)
                s.add(row)

        await self._run(save)

    async def get_element(self, thread_id: str, element_id: str):
        def get():
            with Session(self.engine) as s:
                row = s.get(ElementRow, element_id)
                return json.loads(row.data) if row and row.thread_id == thread_id else None

        return await self._run(get)

    @queue_until_user_message()
    async def delete_element(self, element_id: str, thread_id: Optional[str] = None):
        def delete_():
            with db.write_session(self.engine) as s:
                q = delete(ElementRow).where(ElementRow.id == element_id)
                if thread_id:
                    q = q.where(ElementRow.thread_id == thread_id)
                s.exec(q)

        await self._run(delete_)

    # ---- feedback ---------------------------------------------------------------------

    # Chainlit's feedback routes are replaced by assistant.guard's, which know the user
    # and call save_feedback / delete_feedback below; these only keep Chainlit's API whole.
    async def upsert_feedback(self, feedback: Feedback) -> str:
        raise NotFound("Feedback goes through the owner-checked route.")

    async def delete_feedback(self, feedback_id: str) -> bool:
        return False

    # ---- misc -------------------------------------------------------------------------

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        pass


# ---- feedback, owner-checked (assistant.guard's routes) -----------------------------------


def save_feedback(engine, owner: str, feedback: Feedback) -> Optional[str]:
    """Write feedback on one of ``owner``'s messages; None when there is no such message
    of theirs (someone else's answers the same as a missing one)."""
    with db.write_session(engine) as s:
        step = s.get(StepRow, feedback.forId)
        conv = s.get(ConversationRow, step.thread_id) if step is not None else None
        if conv is None or conv.owner != owner:
            return None
        existing = s.get(FeedbackRow, feedback.id) if feedback.id else None
        if existing is not None and existing.for_id != feedback.forId:
            return None  # an id of feedback on another message: not this one's to change
        fid = feedback.id or uuid.uuid4().hex
        row = existing or FeedbackRow(id=fid, thread_id=step.thread_id, for_id=feedback.forId,
                                      value=feedback.value)
        row.value, row.comment = feedback.value, feedback.comment
        s.add(row)
        return fid


def delete_feedback(engine, owner: str, feedback_id: str) -> bool:
    """Delete feedback on one of ``owner``'s messages; False if there is none of theirs."""
    with db.write_session(engine) as s:
        row = s.get(FeedbackRow, feedback_id)
        conv = s.get(ConversationRow, row.thread_id) if row is not None else None
        if conv is None or conv.owner != owner:
            return False
        s.delete(row)
        return True
