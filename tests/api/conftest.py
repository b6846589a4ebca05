"""Fixtures for the HTTP API tests: a local-mode server and a multi-user one.

Each test module that asks for a server gets its own, with a fresh data folder; it
is stopped (and its folder removed) when the module ends. A failing test shows the
last lines of the server's log under "server log".
"""

from __future__ import annotations

import secrets

import pytest

from api_support import MULTI_USERS, Server, cleanup, start_server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Server):
                report.sections.append((f"server log ({value.name})", value.log_tail()))


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("qec-api-local") / "data"
    try:
        server = start_server("local", data_dir)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        cleanup(server)


@pytest.fixture(scope="module")
def multi_server(tmp_path_factory):
    """QEC_MODE=multi with two users added beforehand on the server's own database."""
    from sqlmodel import SQLModel

    from assistant import tables  # noqa: F401  (registers the users table)
    from assistant.users import add_user
    from sessions import db

    data_dir = tmp_path_factory.mktemp("qec-api-multi") / "data"
    data_dir.mkdir(parents=True)
    engine = db.make_engine(f"sqlite:///{(data_dir / 'qec.db').as_posix()}")
    try:
        db.create_tables(engine)
        SQLModel.metadata.create_all(engine)
        for name, password in MULTI_USERS.items():
            add_user(engine, name, password)
    finally:
        engine.dispose()
    try:
        server = start_server("multi", data_dir, QEC_MODE="multi",
                              CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(48))
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        cleanup(server)
