"""User accounts for the multi-user mode: salted password hashes and sign-in checks.

Owns the password format (scrypt from the standard library, a random 16-byte salt
per user, constant-time comparison) and the user rows. Knows nothing of Chainlit:
the app's password callback and the ``users`` CLI both call these functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Optional

from sqlmodel import Session, select

from .tables import UserRow

_N, _R, _P = 2**14, 8, 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class UserError(Exception):
    """A users command that cannot be done; the message says why."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def check_password(password: str, stored: Optional[str]) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def add_user(engine, name: str, password: str, *, display_name: Optional[str] = None) -> None:
    if not NAME.match(name):
        raise UserError("A user name is 1-64 letters, digits, '.', '_', '@' or '-', starting "
                        "with a letter or digit.")
    if len(password) < 8:
        raise UserError("Use a password of at least 8 characters.")
    with Session(engine) as s:
        row = s.get(UserRow, name) or UserRow(identifier=name)
        if row.password_hash:
            raise UserError(f"There is already a user {name!r}; remove it first to reset it.")
        row.password_hash = hash_password(password)
        row.display_name = display_name or row.display_name
        # Tokens issued before this moment (to an earlier account of this name) end here.
        meta = _meta(row)
        meta["password_set_at"] = time.time()
        row.meta = json.dumps(meta)
        s.add(row)
        s.commit()


def remove_user(engine, name: str) -> None:
    with Session(engine) as s:
        row = s.get(UserRow, name)
        if row is None:
            raise UserError(f"There is no user {name!r}.")
        s.delete(row)
        s.commit()


def list_users(engine) -> list[str]:
    with Session(engine) as s:
        return [r.identifier for r in s.exec(select(UserRow).order_by(UserRow.identifier)).all()
                if r.password_hash]


def token_accepted(engine, name: str, issued_at: Optional[float]) -> bool:
    """The account exists, and a token issued at ``issued_at`` (seconds; None when not
    known) is not older than its password. JWT times are whole seconds, so a token
    from the same second as the reset still counts."""
    with Session(engine) as s:
        row = s.get(UserRow, name)
        if row is None or row.password_hash is None:
            return False
        set_at = _meta(row).get("password_set_at")
    if issued_at is None or not isinstance(set_at, (int, float)):
        return True
    return issued_at >= int(set_at)


def _meta(row: UserRow) -> dict:
    try:
        meta = json.loads(row.meta or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def verify(engine, name: str, password: str) -> bool:
    with Session(engine) as s:
        row = s.get(UserRow, name)
        stored = row.password_hash if row else None
    if stored is None:
        # Spend the same time as a real check, so names cannot be probed by timing.
        check_password(password, _DUMMY)
        return False
    return check_password(password, stored)


_DUMMY = hash_password(secrets.token_hex(8))


# ---- `qwen-edit-chat users ...` ----------------------------------------------------------


def add_parser(sub) -> None:
    p = sub.add_parser("users", help="manage sign-in accounts for the multi-user mode",
                       description="Accounts for QEC_MODE=multi, stored in the app's database.")
    actions = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of asking")
    actions.add_parser("list", help="list users")
    rm = actions.add_parser("remove", help="remove a user (their conversations stay)")
    rm.add_argument("name")


def run(args) -> int:
    import getpass
    import sys

    from sessions import Store

    from . import migrate
    from .config import get_settings

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url)
    store = Store.open(database_url=settings.resolved_database_url, blob_dir=settings.resolved_blob_dir)
    try:
        if args.users_command == "list":
            for name in list_users(store.engine):
                print(name)
            return 0
        if args.users_command == "remove":
            remove_user(store.engine, args.name)
            print(f"removed {args.name}")
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password for {args.name}: ")
            if getpass.getpass("Again: ") != password:
                raise UserError("The two passwords differ; nothing was changed.")
        add_user(store.engine, args.name, password)
        print(f"added {args.name}")
        return 0
    except UserError as e:
        print(f"qwen-edit-chat: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
