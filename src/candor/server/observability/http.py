"""The ``/metrics`` endpoint: a small HTTP/1.1 server with bounds, on a thread of its own.

prometheus_client's own server starts a thread per connection and waits for a request head
for as long as the client likes, so idle or half-sent connections pile up threads. Here:

* connections are coroutines on one event loop (its own thread, never the gRPC loop), so an
  idle one costs a socket, not a thread; at most ``max_connections`` at once, more are closed
  at accept;
* a request head must arrive whole within ``read_timeout_s`` and fit in 8 KiB, else the
  connection is closed (408 or 431);
* the exposition is rendered by a pool of ``render_threads`` threads, so a scrape never
  blocks the accept loop, and a burst of scrapes queues rather than multiplying threads;
* one request per connection (``Connection: close``), which is what Prometheus expects.

>>> endpoint = MetricsEndpoint(registry, "127.0.0.1", 0)   # doctest: +SKIP
>>> endpoint.port                                          # doctest: +SKIP
41877
>>> endpoint.shutdown()                                    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("candor.server")
MAX_HEAD_BYTES = 8192
PATHS = ("/metrics", "/")


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode("latin-1") + body


class MetricsEndpoint:
    def __init__(self, registry: CollectorRegistry, host: str, port: int, *, max_connections: int = 1024,
                 read_timeout_s: float = 5.0, render_threads: int = 2):  # fmt: skip
        """Listening when the constructor returns; OSError (port in use, address not available) otherwise."""
        self.registry = registry
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.connections = 0
        self._render = ThreadPoolExecutor(max_workers=render_threads, thread_name_prefix="candor-metrics")
        self._loop = asyncio.new_event_loop()
        started: list[object] = []
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, host, port))
                started.append(self._server.sockets[0].getsockname()[1])
            except OSError as e:
                started.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="candor-metrics-http", daemon=True)
        self._thread.start()
        ready.wait()
        if isinstance(started[0], OSError):
            self._render.shutdown()
            raise started[0]
        self.port = int(started[0])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            writer.close()
            return
        self.connections += 1
        try:
            writer.write(await self._answer(reader))
            await asyncio.wait_for(writer.drain(), self.read_timeout_s)
        except (OSError, TimeoutError):
            pass  # the client went away or stopped reading: nothing to tell it
        finally:
            self.connections -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return _response("408 Request Timeout", b"the request head did not arrive in time\n")
        except asyncio.LimitOverrunError:
            return _response("431 Request Header Fields Too Large", b"request head over 64 KiB\n")
        except asyncio.IncompleteReadError:
            return b""
        if len(head) > MAX_HEAD_BYTES:
            return _response("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes\n".encode())
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if method not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", b"GET /metrics\n")
        if path not in PATHS:
            return _response("404 Not Found", b"metrics are at /metrics\n")
        accept = next((line.partition(":")[2].strip() for line in lines[1:] if line.lower().startswith("accept:")), "")
        encoder, content_type = choose_encoder(accept)
        body = await asyncio.get_running_loop().run_in_executor(self._render, encoder, self.registry)
        answer = _response("200 OK", body, content_type)
        return answer[: len(answer) - len(body)] if method == "HEAD" else answer

    def shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._render.shutdown(wait=False)
