"""Helpers for the HTTP API tests: the real server as a subprocess, raw requests, polling.

The server runs ``python -m assistant serve`` on a free 127.0.0.1 port with a fresh
data folder and the offline tiny model. Every wait has a bound, and a failing test
shows the server's log (see conftest.py).
"""

from __future__ import annotations

import http.client
import io
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
API = "/api/v1"
START_TIMEOUT_S = 90
MULTI_USERS = {"alice": "alice-password-1", "bob": "bob-password-22"}
JOB_TIMEOUT_S = 240  # the tiny model takes seconds per image; a busy 2-core machine, more


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    url: str
    port: int
    data_dir: Path
    log_path: Path
    proc: Optional[subprocess.Popen] = None
    clients: list = field(default_factory=list)

    def log_tail(self, chars: int = 8000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def client(self, token: Optional[str] = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def start_server(name: str, data_dir: Path, **env_extra: str) -> Server:
    """Start the server and wait (bounded) for /health; raises with the log if it fails."""
    port = free_port()
    log_path = data_dir.parent / f"{name}-server.log"
    env = dict(os.environ, QEC_DATA_DIR=str(data_dir), QEC_BACKEND="tiny", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    for key in ("CHAINLIT_AUTH_SECRET", "QEC_MODE", "QEC_DATABASE_URL", "QEC_BLOB_DIR"):
        env.pop(key, None)
    env.update(env_extra)
    server = Server(name, f"http://127.0.0.1:{port}", port, data_dir, log_path)
    with open(log_path, "wb") as log:
        server.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the {name} server exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the {name} server gave no 200 on /health within "
                               f"{START_TIMEOUT_S} s:\n{server.log_tail()}")
        time.sleep(0.3)


def cleanup(server: Server) -> None:
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


# ---- requests ---------------------------------------------------------------------------------


def poll_job(client: httpx.Client, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict:
    """The job once it is final (succeeded, failed or cancelled), polled with a bound."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"{API}/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["status"] in ("queued", "running", "succeeded", "failed", "cancelled")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s"
        time.sleep(0.5)


def raw_request(server: Server, method: str, path: str, headers: dict,
                chunks: Iterable[bytes] = (), chunked: bool = False, timeout: float = 30):
    """Send a request by hand (a lying Content-Length, a chunked stream) and read the answer.

    Stops sending as soon as the server answers, as a careful client does.
    Returns (status, headers, body).
    """
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if chunked:
            head.append("Transfer-Encoding: chunked")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # an answer is waiting: stop sending
            data = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if chunked else chunk
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            if chunked:
                try:
                    sock.sendall(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        sock.close()


# ---- images -----------------------------------------------------------------------------------


def png_bytes(size=(64, 48), color=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def pixel_bomb() -> bytes:
    """A small PNG file that decodes to 64 megapixels (more than uploads allow)."""
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def damaged_jpeg() -> bytes:
    """A JPEG whose header claims 6000x6000 over 3 KB of scan data, then an end marker."""
    buf = io.BytesIO()
    Image.new("RGB", (6000, 6000), (120, 130, 140)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()[:3000] + b"\xff\xd9"


def png_with_big_profile() -> bytes:
    """A small PNG carrying an 8 MB colour profile, as some editors write."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, format="PNG", icc_profile=bytes(range(256)) * 32768)
    return buf.getvalue()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
