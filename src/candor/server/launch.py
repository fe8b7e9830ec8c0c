"""Start ``candor serve`` (or any server that announces its ports) as a child
process on loopback and learn its ports from its announcement line.

Used by ``candor demo``, the benchmark harness and the tests; stdlib only, so
importing it loads neither grpc nor onnxruntime.

>>> with serve_process(Path("models"), "--poll-interval-seconds", "0") as server:  # doctest: +SKIP
...     server.target
'127.0.0.1:41233'
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def ready_line(grpc_host: str, grpc_port: int, metrics_host: str, metrics_port: int) -> str:
    """What ``candor serve`` prints once it is listening (``SERVE_READY`` parses it)."""
    return f"candor serve: gRPC on {grpc_host}:{grpc_port}, metrics on {metrics_host}:{metrics_port}"


SERVE_READY = re.compile(r"gRPC on [^\s:]+:(\d+), metrics on [^\s:]+:(\d+)")


class ServerProcess:
    """A child process whose output is read continuously (so its pipe never fills)
    until ``ready`` matches a line; the match's groups are the ports, as ints.

    ``echo``: also print each line (but the ready line) to this process's stdout, after this prefix.
    ``block`` False: return at once; ``wait_ready()`` later (to start several at a time)."""

    def __init__(self, cmd: list[str], ready: re.Pattern = SERVE_READY, env: dict | None = None, wait: float = 90,
                 echo: str | None = None, block: bool = True):  # fmt: skip
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})  # fmt: skip
        self.output: list[str] = []
        self._found: list[tuple[int, ...]] = []
        self._wait = wait

        def pump() -> None:
            for line in self.proc.stdout:
                self.output.append(line)
                m = ready.search(line)
                if m and not self._found:
                    self._found.append(tuple(int(g) for g in m.groups()))
                elif echo is not None:
                    print(echo + line, end="", flush=True)

        threading.Thread(target=pump, daemon=True).start()
        if block:
            self.wait_ready()

    def poll_ready(self) -> bool:
        """Whether the ready line has come (``ports`` is set then); never waits."""
        if self._found:
            self.ports = self._found[0]
        return bool(self._found)

    def wait_ready(self) -> None:
        end = time.monotonic() + self._wait
        while not self._found:
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                raise RuntimeError(f"{' '.join(self.cmd[:4])} did not start:\n" + "".join(self.output[-30:]))
            time.sleep(0.05)
        self.ports = self._found[0]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process (graceful stop for SIGTERM) and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_process(repo: Path, *flags: str, env: dict | None = None) -> ServerProcess:
    """``candor serve`` on 127.0.0.1 with free ports, feedback stored beside the repository."""
    cmd = [sys.executable, "-m", "candor", "serve", "--model-repository", str(repo), "--grpc-host", "127.0.0.1",
           "--grpc-port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0", "--data-dir", str(repo.parent / "data"),
           *flags]  # fmt: skip
    return ServerProcess(cmd, env=env)
