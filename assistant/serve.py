"""`qwen-edit-chat serve`: start the chat on Chainlit's server.

Owns process start-up: the data folder, the sign-in secret (made once and kept
there), Chainlit's environment, and then Chainlit's own runner on ``assistant/app.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP_FILE = Path(__file__).with_name("app.py")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="start the chat at http://HOST:PORT",
                       description="Start the chat (Chainlit) with the QEC_* settings.")
    p.add_argument("--host", help="listen address (default QEC_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default QEC_PORT or 8000)")


def run(args: argparse.Namespace) -> int:
    from .config import get_settings
    from .runtime import auth_secret

    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.mode == "multi" and not os.environ.get("CHAINLIT_AUTH_SECRET"):
        # Several people sign in: the secret that signs their sessions must be chosen and
        # kept by whoever runs the server (the same on every process behind a balancer).
        print("qwen-edit-chat: the multi-user mode needs CHAINLIT_AUTH_SECRET, the secret that "
              "signs sign-in tokens. Make one with `chainlit create-secret` (or any long random "
              "string), set it in the environment or .env, and start again.", file=sys.stderr)
        return 2
    if settings.mode == "local" and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"qwen-edit-chat: warning: the local mode signs in anyone who reaches it, and it "
              f"listens on {host}. Use QEC_MODE=multi with accounts to serve other people.",
              file=sys.stderr)
    # The database first: upgraded (after a backup, on SQLite), or refused if newer.
    from . import migrate

    try:
        done = migrate.upgrade(settings.resolved_database_url)
    except migrate.DatabaseTooNew as e:
        print(f"qwen-edit-chat: {e}", file=sys.stderr)
        return 2
    if done["from"] != done["to"] and done["from"] is not None:
        print(f"Database upgraded from schema {done['from']} to {done['to']}"
              + (f"; the copy from before is {done['backup']}" if done["backup"] else "."), flush=True)
    # Local mode: one person, a secret made once and kept in the data folder. (Only
    # then: a multi-user server brings its own, and an unused file there misleads.)
    if not os.environ.get("CHAINLIT_AUTH_SECRET"):
        os.environ["CHAINLIT_AUTH_SECRET"] = auth_secret(settings.data_dir)
    os.environ["CHAINLIT_HOST"], os.environ["CHAINLIT_PORT"] = host, str(port)
    # Chainlit reads .chainlit/config.toml, public/ and chainlit.md from the working folder.
    os.chdir(PROJECT_ROOT)
    print(f"Qwen Edit Chat on http://{host}:{port}  (backend: {settings.backend_name()}, "
          f"data: {settings.data_dir.resolve()})", flush=True)

    import chainlit.config as chainlit_config
    import chainlit.server as chainlit_server
    from chainlit.cli import run_chainlit
    from chainlit.config import config

    # Chainlit keeps uploads in <working folder>/.files and deletes that whole folder
    # when a server stops, which would pull the uploads from under any other server
    # started from this checkout (a test run beside `make run`): keep ours apart.
    files_dir = settings.data_dir / "chainlit-files"
    files_dir.mkdir(parents=True, exist_ok=True)
    chainlit_config.FILES_DIRECTORY = chainlit_server.FILES_DIRECTORY = files_dir
    config.run.headless = True
    run_chainlit(str(APP_FILE))
    return 0
