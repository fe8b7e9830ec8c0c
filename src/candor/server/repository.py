"""The model repository as the server sees it: every version of every model,
loaded, watched, and swapped atomically.

Layout: ``<root>/<name>/<version>/{model.onnx,candor.json}``. A version whose
files change is loaded again; if loading fails, the working copy keeps
serving and the failure is reported (state message, log, metric). Folders
that are not whole numbers (such as the trainer's ``.staging-*``) are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE
from candor.server.errors import InvalidArgument, NotFound, Unavailable
from candor.server.metrics import ServerMetrics
from candor.server.model import LoadedModel, LoadError, attach_batcher, open_model
from candor.server.sessions import choose_providers
from candor.server.settings import Settings

log = logging.getLogger("candor.server")

LOADING, READY, FAILED = "LOADING", "READY", "FAILED"


@dataclass
class VersionEntry:
    name: str
    version: int
    state: str
    message: str = ""
    model: LoadedModel | None = None
    identity: tuple = ()  # the files' (mtime, size) this entry reflects


def _identity(folder: Path) -> tuple:
    out = []
    for name in (MANIFEST_FILE, MODEL_FILE):
        try:
            st = (folder / name).stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [None, None]
    return tuple(out)


class ModelRepository:
    def __init__(self, root: str | Path, settings: Settings, metrics: ServerMetrics, executor: Executor,
                 on_change: Callable[[], None] | None = None):  # fmt: skip
        self.root = Path(root)
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.providers = choose_providers(settings.provider)
        self._entries: dict[str, dict[int, VersionEntry]] = {}
        self._on_change = on_change or (lambda: None)
        self._lock = asyncio.Lock()

    def _scan(self) -> dict[tuple[str, int], Path]:
        found = {}
        if not self.root.is_dir():
            return found
        for model_dir in self.root.iterdir():
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            for version_dir in model_dir.iterdir():
                if version_dir.is_dir() and version_dir.name.isdigit() and int(version_dir.name) > 0:
                    found[(model_dir.name, int(version_dir.name))] = version_dir
        return found

    async def refresh(self) -> None:
        """Load new and changed versions, unload removed ones."""
        async with self._lock:
            found = await asyncio.to_thread(self._scan)
            changed = False
            for (name, version), folder in sorted(found.items()):
                identity = await asyncio.to_thread(_identity, folder)
                entry = self._entries.get(name, {}).get(version)
                if entry is not None and entry.identity == identity:
                    continue
                await self._load(name, version, folder, identity, entry)
                changed = True
            for name, versions in list(self._entries.items()):
                for version in list(versions):
                    if (name, version) not in found:
                        entry = versions.pop(version)
                        log.info("model %s version %s removed from the repository; unloading", name, version)
                        self._retire(entry)
                        self.metrics.prediction_stats.forget(name, str(version))
                        self.metrics.model_ready.remove(name, str(version))
                        changed = True
                if not versions:
                    del self._entries[name]
            if changed:
                self._on_change()

    async def _load(self, name: str, version: int, folder: Path, identity: tuple, previous: VersionEntry | None) -> None:
        if previous is None:
            self._entries.setdefault(name, {})[version] = VersionEntry(name, version, LOADING, identity=identity)
        try:
            model = await asyncio.to_thread(open_model, folder, name, version, self.settings, self.providers)
        except LoadError as e:
            self.metrics.load_failures.labels(name).inc()
            if previous is not None and previous.state == READY:
                log.error("model %s version %s changed on disk but the new files fail to load; still serving the loaded copy: %s",
                          name, version, e)  # fmt: skip
                previous.message = f"new files on disk failed to load, serving the previous copy: {e}"
                previous.identity = identity  # report once, not at every poll
                return
            log.error("model %s version %s failed to load: %s", name, version, e)
            self._entries.setdefault(name, {})[version] = VersionEntry(name, version, FAILED, str(e), None, identity)
            self.metrics.model_ready.labels(name, str(version)).set(0)
            return
        attach_batcher(model, self.settings, self.executor, self.metrics)
        # One dict assignment: a request resolves either the old model or the new one.
        self._entries.setdefault(name, {})[version] = VersionEntry(name, version, READY, "", model, identity)
        self.metrics.model_info.labels(name, str(version), model.provider, model.manifest.task).set(1)
        self.metrics.model_ready.labels(name, str(version)).set(1)
        self.metrics.start_series(name, str(version))
        log.info("model %s version %s ready on %s", name, version, model.provider)
        if previous is not None:
            self._retire(previous)

    def _retire(self, entry: VersionEntry) -> None:
        """Let a replaced or removed model finish what it has queued, then drop it."""
        if entry.model is None:
            return
        self.metrics.model_info.remove(entry.name, str(entry.version), entry.model.provider, entry.model.manifest.task)
        if entry.model.batcher is not None:
            asyncio.get_running_loop().create_task(entry.model.batcher.close())

    async def watch(self) -> None:
        """Poll the repository until cancelled."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.refresh()
            except OSError as e:  # the folder vanished or is unreadable for a moment
                log.warning("cannot scan the model repository %s: %s", self.root, e)

    def entries(self) -> list[VersionEntry]:
        return [e for name in sorted(self._entries) for _, e in sorted(self._entries[name].items())]

    def versions(self, name: str) -> list[VersionEntry]:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise NotFound(f"model {name!r} not found; models served: {known}")
        return [e for _, e in sorted(self._entries[name].items())]

    def entry(self, name: str, version: str) -> VersionEntry:
        """The entry for ``version`` (text), or the newest READY one when empty."""
        entries = self.versions(name)
        if not version:
            ready = [e for e in entries if e.state == READY]
            if not ready:
                raise Unavailable(
                    f"model {name!r} has no ready version: " + "; ".join(f"v{e.version} {e.state} {e.message}" for e in entries)
                )
            return ready[-1]
        if not version.isdigit():
            raise InvalidArgument(f"version must be a positive whole number or empty (newest), got {version!r}")
        for e in entries:
            if e.version == int(version):
                return e
        raise NotFound(f"model {name!r} has no version {version}; versions: {', '.join(str(e.version) for e in entries)}")

    def resolve(self, name: str, version: str) -> LoadedModel:
        """The model to run for (name, version); NOT_FOUND or UNAVAILABLE otherwise."""
        e = self.entry(name, version)
        if e.state != READY or e.model is None:
            raise Unavailable(f"model {name!r} version {e.version} is {e.state}" + (f": {e.message}" if e.message else ""))
        return e.model

    def model_ready(self, name: str) -> bool:
        return any(e.state == READY for e in self._entries.get(name, {}).values())

    async def close(self) -> None:
        for entry in self.entries():
            if entry.model is not None and entry.model.batcher is not None:
                await entry.model.batcher.close()
