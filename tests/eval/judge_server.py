"""Tiny in-process judge servers for tests that misbehave on purpose. (The
real one, llama-cpp-python's server with SmolLM2-135M-Instruct, is started by
`codemix.eval.judge.local_server.local_llama_server`.)"""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completion(content: str, logprobs: dict | None = None) -> dict:
    """A chat-completions response body."""
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": logprobs, "finish_reason": "stop"}]}


class FakeJudge:
    """An in-process HTTP server; `respond(n, body) -> (status, bytes, delay_s)`
    decides each reply (n counts requests from 1)."""

    def __init__(self, respond):
        self.respond = respond
        self.hits = 0
        self.bodies: list[dict] = []
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.hits += 1
                    n = outer.hits
                    outer.bodies.append(body)
                status, data, delay = outer.respond(n, body)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
