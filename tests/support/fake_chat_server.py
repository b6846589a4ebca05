"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benches.

``FakeChatServer(answer=..., delay=0)`` answers every ``POST .../chat/completions``
with ``answer`` as the assistant's message content, after ``delay`` seconds:
- ``answer``: a string (sent as is), a dict (sent as its JSON text), or a callable
  taking the parsed request body and returning either;
- ``status``: the HTTP status to answer with (the body is then an error object);
- ``reject_response_format``: answer 400 to a request that has ``response_format``,
  as some servers do.
``.url`` is its API base (``http://127.0.0.1:PORT/v1``); ``.requests`` holds what
arrived, each ``{"path", "headers", "body"}`` (headers with lower-case names, body
parsed JSON). Use it as a context manager; leaving it stops the server and releases
any request still sleeping in ``delay``.

Import it with ``sys.path.insert(0, <tests/support>)`` (tests/ is not a package).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Union

Answer = Union[str, dict, Callable[[dict], Union[str, dict]]]


class FakeChatServer:
    def __init__(self, answer: Answer = '{"prompt": "ok"}', delay: float = 0.0, *,
                 status: int = 200, reject_response_format: bool = False) -> None:
        self.answer = answer
        self.delay = float(delay)
        self.status = int(status)
        self.reject_response_format = reject_response_format
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeChatServer":
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fake-chat-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping in `delay`
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _content(self, body: dict) -> str:
        answer = self.answer(body) if callable(self.answer) else self.answer
        return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm
                # and the client's delayed ACK add 40 ms to every answer on a kept-alive
                # connection, which the bench would count as the polisher's.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                fake.requests.append({
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                })
                if fake.delay and fake._stop.wait(fake.delay):
                    return  # the server is stopping
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found"}})
                if not isinstance(body, dict):
                    return self._send(400, {"error": {"message": "body is not JSON"}})
                if fake.reject_response_format and "response_format" in body:
                    return self._send(400, {"error": {"message": "response_format is not supported"}})
                if fake.status != 200:
                    return self._send(fake.status, {"error": {"message": f"status {fake.status}"}})
                self._send(200, {
                    "id": f"chatcmpl-{len(fake.requests)}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": fake._content(body)},
                        "finish_reason": "stop",
                    }],
                })

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a timeout or a cancel)
                    pass

        return Handler


__all__ = ["FakeChatServer"]
