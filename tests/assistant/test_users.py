"""Accounts for the multi-user mode: salted hashes, sign-in checks, the users CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlmodel import SQLModel

import assistant.tables  # noqa: F401
from assistant import users
from sessions import Store


@pytest.fixture
def engine(tmp_path):
    store = Store.open(database_url=f"sqlite:///{tmp_path}/u.db", blob_dir=tmp_path / "b")
    SQLModel.metadata.create_all(store.engine)
    yield store.engine
    store.close()


def test_hash_is_salted_and_checks():
    a, b = users.hash_password("correct horse"), users.hash_password("correct horse")
    assert a != b and a.startswith("scrypt$")
    assert users.check_password("correct horse", a)
    assert not users.check_password("wrong horse", a)
    assert not users.check_password("x", None)
    assert not users.check_password("x", "garbage")


def test_add_verify_list_remove(engine):
    users.add_user(engine, "ann", "long enough")
    assert users.verify(engine, "ann", "long enough")
    assert not users.verify(engine, "ann", "long enougH")
    assert not users.verify(engine, "nobody", "long enough")
    with pytest.raises(users.UserError, match="already"):
        users.add_user(engine, "ann", "another one")
    with pytest.raises(users.UserError, match="8 characters"):
        users.add_user(engine, "bob", "short")
    with pytest.raises(users.UserError, match="user name"):
        users.add_user(engine, "../evil", "long enough")
    assert users.list_users(engine) == ["ann"]
    users.remove_user(engine, "ann")
    assert users.list_users(engine) == []
    with pytest.raises(users.UserError, match="no user"):
        users.remove_user(engine, "ann")


def test_users_cli(tmp_path):
    env = {"QEC_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def cli(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "assistant", "users", *args], input=stdin,
                              capture_output=True, text=True, env=env, timeout=120)

    assert cli("add", "ann", "--password-stdin", stdin="a good password\n").returncode == 0
    dup = cli("add", "ann", "--password-stdin", stdin="a good password\n")
    assert dup.returncode == 2 and "already a user 'ann'" in dup.stderr
    assert cli("list").stdout.split() == ["ann"]
    assert cli("remove", "ann").returncode == 0
    assert cli("list").stdout.split() == []
