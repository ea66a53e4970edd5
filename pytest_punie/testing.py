"""A small OpenAI-compatible chat server for offline tests of eval suites and of the plugin.

It answers each prompt from a table, can return structured tool calls, waits ``delay`` seconds
per request and records how many requests were in flight at once, so tests can check the
plugin's concurrency without a model. Streamed requests (``"stream": true``) get server-sent
events as ``mlx_lm server`` sends them: headers at once, then one chunk per word. With
``serial=True`` it answers one request at a time (others wait their turn, as in a busy server);
``{"stall": text}`` sends the first word of ``text`` and then nothing.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """Serve ``answers``: prompt -> text, or a dict of ``tool_calls`` and the ``then`` text.

    After a tool result it answers ``then`` (or "done"); ``{"loop": text}`` answers ``text``
    every time, to model a conversation that goes round in circles.
    """

    def __init__(
        self,
        answers: dict[str, Any],
        delay: float = 0.0,
        default: str = "I don't know.",
        *,
        token_delay: float = 0.0,
        serial: bool = False,
    ) -> None:
        self.answers = answers
        self.delay = delay
        self.token_delay = token_delay
        self.serial = serial
        self._turn = threading.Lock()
        self._closing = threading.Event()
        self.default = default
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The chat requests received, without the one-token readiness probes."""
        with self._lock:
            return [r for r in self.requests if r.get("max_tokens") != 1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages", [])
        prompt = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if isinstance(prompt, list):
            prompt = " ".join(p.get("text", "") for p in prompt if isinstance(p, dict))
        answer = self.answers.get(prompt, self.default)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(answer, dict) and "stall" in answer:
            message["content"] = answer["stall"]
        elif isinstance(answer, dict) and "loop" in answer:
            message["content"] = answer["loop"]  # the same (text) tool call, whatever comes back
        elif messages and messages[-1].get("role") == "tool":
            message["content"] = answer.get("then", "done") if isinstance(answer, dict) else "done"
        elif isinstance(answer, dict):
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                }
                for i, c in enumerate(answer["tool_calls"])
            ]
        else:
            message["content"] = answer
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def chunks(self, body: dict[str, Any]) -> list[dict[str, Any] | None]:
        """The streamed chunks of the reply to ``body`` (None: stall there)."""
        reply = self.reply(body)
        message = reply["choices"][0]["message"]
        base = {k: reply[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        out: list[dict[str, Any] | None] = []
        if message.get("tool_calls"):
            calls = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
            out.append(chunk({"role": "assistant", "tool_calls": calls}))
        else:
            words = (message["content"] or "").split(" ")
            out += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
            prompt = body.get("messages", [{}])[-1].get("content")
            if isinstance(self.answers.get(prompt), dict) and "stall" in self.answers[prompt]:
                return [*out[:1], None]
        out.append(chunk({}, reply["choices"][0]["finish_reason"]))
        out.append({**base, "choices": [], "usage": reply["usage"]})
        return out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.startswith("/v1/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-model"}]})
                else:
                    self._send(404, {"error": "not found"})

            def _stream(self, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.flush()
                with fake._turn if fake.serial else contextlib.nullcontext():
                    time.sleep(fake.delay)
                    for chunk in fake.chunks(body):
                        if chunk is None:  # a stalled stream: nothing more until shutdown
                            fake._closing.wait()
                            return
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(fake.token_delay)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if body.get("stream"):
                        self._stream(body)
                        return
                    if body.get("max_tokens") != 1:
                        time.sleep(fake.delay)
                    self._send(200, fake.reply(body))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

        return Handler
