"""The plugin against the ceiling: `pytest evals/` vs a bare async client replaying its requests.

1. A recording run: `pytest evals/` through a byte-forwarding proxy that keeps every request
   body the plugin sent (mlx_lm answers one request per connection, so the proxy needs no HTTP
   beyond reading one request).
2. Alternating rounds on the same server (started as the plugin starts it: OpenBLAS, the same
   chat template): `pytest evals/` direct, then a bare async client sending the recorded bodies
   as they are, the same number at a time. Output tokens/s of each; the best of the rounds.

    python benchmarks/replay.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, run_evals, server, table

from pytest_punie.serving.chat_template import choose_template
from pytest_punie.serving.default_model import default_model_path


class RecordingProxy:
    """Forwards TCP connections to ``upstream``, keeping each POST body sent through it."""

    def __init__(self, upstream: str) -> None:
        parsed = urlparse(upstream)
        self.host, self.port = parsed.hostname or "127.0.0.1", int(parsed.port or 80)
        self.bodies: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.AbstractServer | None = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
        )
        ready.set()
        self.loop.run_forever()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        if head.startswith(b"POST") and b"/chat/completions" in head.split(b"\r\n", 1)[0]:
            self.bodies.append(json.loads(body))
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        up_writer.write(head + body)
        await up_writer.drain()
        while chunk := await up_reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()
        up_writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


async def replay(
    base_url: str, bodies: list[dict[str, Any]], concurrency: int
) -> tuple[float, int]:
    """Send ``bodies`` (streamed, as recorded), ``concurrency`` at a time: seconds, tokens."""
    import httpx2 as httpx

    semaphore = asyncio.Semaphore(concurrency)
    tokens = 0
    resent = 0

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        nonlocal tokens, resent
        async with semaphore:
            for attempt in range(5):
                text, received = "", False
                try:
                    async with client.stream(
                        "POST", f"{base_url}/chat/completions", json=body
                    ) as resp:
                        async for line in resp.aiter_lines():
                            received = True
                            text = line if '"usage"' in line else text
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
                    # mlx_lm's HTTP server resets a connection it could not take (its listen
                    # backlog is small): send again what got no byte, as the plugin does
                    if received or attempt == 4:
                        raise
                    resent += 1
            if text.startswith("data:"):
                tokens += json.loads(text[5:])["usage"]["completion_tokens"]

    # mlx_lm's server closes each connection after its answer: a pooled one would be dead
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, b) for b in bodies))
        if resent:
            print(f"bare replay: {resent} request(s) sent again after a reset", flush=True)
        return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    model = str(default_model_path())
    template = choose_template("auto", model).template
    flags = ("--chat-template", template) if template else ()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, server(model, extra_args=flags) as srv:
        print(f"server BLAS: {srv.blas}", flush=True)
        proxy = RecordingProxy(srv.base_url)
        common = (f"--punie-concurrency={args.concurrency}",)
        run_evals(Path(tmp), "record", f"--punie-base-url={proxy.base_url}", *common)
        proxy.close()
        bodies = [b for b in proxy.bodies if b.get("max_tokens") != 1]  # not the probe
        plugin_tps, replay_tps = [], []
        for round_ in range(args.rounds):
            seconds, document = run_evals(
                Path(tmp), f"plugin{round_}", f"--punie-base-url={srv.base_url}", *common
            )
            tokens = sum(
                (c.get("response") or {}).get("output_tokens", 0) for c in document["cases"]
            )
            plugin_tps.append(tokens / seconds)
            rows.append(
                [
                    f"pytest evals/ (round {round_ + 1})",
                    f"{seconds:.1f}",
                    tokens,
                    f"{tokens / seconds:.1f}",
                ]
            )
            r_seconds, r_tokens = asyncio.run(replay(srv.base_url, bodies, args.concurrency))
            replay_tps.append(r_tokens / r_seconds)
            rows.append(
                [
                    f"bare replay of {len(bodies)} bodies (round {round_ + 1})",
                    f"{r_seconds:.1f}",
                    r_tokens,
                    f"{r_tokens / r_seconds:.1f}",
                ]
            )
            print(table(["run", "wall s", "output tokens", "tokens/s"], rows[-2:]), flush=True)
    print("\n".join(machine_facts()))
    print(f"same server, {args.concurrency} at a time, alternating rounds\n")
    print(table(["run", "wall s", "output tokens", "tokens/s"], rows))
    ratio = max(plugin_tps) / max(replay_tps)
    print(f"\nplugin / replay ceiling (best of {args.rounds}): {ratio:.2f}")


if __name__ == "__main__":
    main()
