"""The model repository as the server sees it: every version of every model,
loaded, watched, and swapped atomically.

Layout: ``<root>/<name>/<version>/{model.onnx,candor.json}``. A version whose
files change is loaded again; if loading fails, the working copy keeps
serving and the failure is reported (state message, log, event). Folders
that are not whole numbers (such as the trainer's ``.staging-*``) are ignored.

The version policy (``serve_latest``, ``serve_versions``) picks which versions on
disk are served: the newest N of each model by number, as Triton's and TF Serving's
"latest" policies do, plus the ones named. A version the policy leaves out is
unloaded like a removed one, and comes back if it is named or the newer ones go.

Thread safety: the event loop is the only writer. Readers on other threads (the
metrics endpoint) call :meth:`ModelRepository.entries`, which returns an immutable
tuple of frozen entries that the loop replaces in one assignment after each change,
so a reader sees the repository before or after a change, never halfway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE
from candor.calibration.repository import MAX_VERSION_DIGITS, parse_version
from candor.server.core.errors import InvalidArgument, NotFound, Unavailable, shown
from candor.server.core.events import Events, LoadFailed, RepositoryChanged, VersionLoaded, VersionUnloaded
from candor.server.core.model import LoadedModel, LoadError, open_version
from candor.server.core.sessions import choose_providers
from candor.server.core.settings import Settings

log = logging.getLogger("candor.server")

LOADING, READY, FAILED = "LOADING", "READY", "FAILED"


@dataclass(frozen=True)
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
    def __init__(self, root: str | Path, settings: Settings, executor: Executor, events: Events):
        self.root = Path(root)
        self.settings = settings
        self.executor = executor
        self.events = events
        self.providers = choose_providers(settings.provider)
        self._entries: dict[tuple[str, int], VersionEntry] = {}
        self._snapshot: tuple[VersionEntry, ...] = ()
        self._lock = asyncio.Lock()
        self._ignored: set[Path] = set()  # folders already logged as not versions
        self._left_out: set[tuple[str, int]] = set()  # versions on disk the policy does not serve, logged once
        self._pinned = settings.pinned_versions()
        self._root_missing = False

    def _scan(self) -> dict[tuple[str, int], Path] | None:
        """Every version folder, or None when the root itself is missing (then nothing is unloaded)."""
        if not self.root.is_dir():
            return None
        found = {}
        for model_dir in self.root.iterdir():
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            for version_dir in model_dir.iterdir():
                if not version_dir.is_dir() or version_dir.name.startswith("."):
                    continue  # the trainer's .staging-* folders among them
                version = parse_version(version_dir.name)
                if version is not None:
                    found[(model_dir.name, version)] = version_dir
                elif version_dir not in self._ignored:
                    self._ignored.add(version_dir)
                    log.warning("ignoring %s: a version folder's name is a positive whole number in ASCII digits "
                                "(at most %d)", version_dir, MAX_VERSION_DIGITS)  # fmt: skip
        return self._apply_policy(found)

    def _apply_policy(self, found: dict[tuple[str, int], Path]) -> dict[tuple[str, int], Path]:
        """The versions to serve: per model the newest ``serve_latest`` (0: all), plus the pinned ones."""
        latest = self.settings.serve_latest
        if not latest:
            return found
        newest: dict[str, list[int]] = {}
        for name, version in sorted(found, reverse=True):
            newest.setdefault(name, []).append(version)
        keep = {(name, v) for name, versions in newest.items() for v in versions[:latest]} | (self._pinned & set(found))
        left_out = set(found) - keep
        for name, version in sorted(left_out - self._left_out):
            log.info("model %s version %s is not served: the version policy serves the newest %d (--serve-latest) and "
                     "those named by --serve-versions", name, version, latest)  # fmt: skip
        self._left_out = left_out
        return {key: folder for key, folder in found.items() if key in keep}

    def _set(self, entry: VersionEntry) -> None:
        """Store ``entry`` and publish a new snapshot (one assignment: atomic for readers on any thread)."""
        self._entries[(entry.name, entry.version)] = entry
        self._snapshot = tuple(self._entries[k] for k in sorted(self._entries))

    def _drop(self, key: tuple[str, int]) -> VersionEntry:
        entry = self._entries.pop(key)
        self._snapshot = tuple(self._entries[k] for k in sorted(self._entries))
        return entry

    async def refresh(self) -> None:
        """Load new and changed versions, unload removed ones."""
        async with self._lock:
            found = await asyncio.to_thread(self._scan)
            if found is None:
                # Moved away for a moment (a deploy's mv), unmounted or not made yet: what is loaded
                # keeps serving until the root is back and says otherwise.
                if not self._root_missing:
                    log.warning("the model repository %s is missing; still serving the %d loaded version(s) until it "
                                "is back", self.root, len(self.loaded()))  # fmt: skip
                self._root_missing = True
                return
            if self._root_missing:
                log.info("the model repository %s is back", self.root)
                self._root_missing = False
            changed = False
            for (name, version), folder in sorted(found.items()):
                identity = await asyncio.to_thread(_identity, folder)
                entry = self._entries.get((name, version))
                if entry is not None and entry.identity == identity:
                    continue
                await self._load(name, version, folder, identity, entry)
                changed = True
            for key in [k for k in self._entries if k not in found]:
                if key not in self._left_out:
                    log.info("model %s version %s removed from the repository; unloading", *key)
                self._retire(self._drop(key), removed=True)
                changed = True
            if changed:
                self.events.emit(RepositoryChanged())

    async def _load(self, name: str, version: int, folder: Path, identity: tuple, previous: VersionEntry | None) -> None:
        if previous is None:
            self._set(VersionEntry(name, version, LOADING, identity=identity))
        try:
            opened = await asyncio.to_thread(open_version, folder, name, version, self.settings, self.providers)
        except LoadError as e:
            still_serving = previous is not None and previous.state == READY
            self.events.emit(LoadFailed(name, str(version), str(e), still_serving))
            if still_serving:
                log.error("model %s version %s changed on disk but the new files fail to load; still serving the loaded copy: %s",
                          name, version, e)  # fmt: skip
                message = f"new files on disk failed to load, serving the previous copy: {e}"
                self._set(dataclasses.replace(previous, message=message, identity=identity))  # reported once, not every poll
                return
            log.error("model %s version %s failed to load: %s", name, version, e)
            self._set(VersionEntry(name, version, FAILED, str(e), None, identity))
            return
        model = LoadedModel.start(opened, self.settings, self.executor, self.events)
        # One assignment: a request resolves either the old model or the new one.
        self._set(VersionEntry(name, version, READY, "", model, identity))
        if previous is not None:
            self._retire(previous, removed=False)
        self.events.emit(VersionLoaded(name, str(version), model.provider, model.manifest.task))
        log.info("model %s version %s ready on %s", name, version, model.provider)

    def _retire(self, entry: VersionEntry, removed: bool) -> None:
        """Let a replaced or removed model finish what it has queued, then drop it."""
        if entry.model is None:
            return
        model = entry.model
        self.events.emit(VersionUnloaded(entry.name, str(entry.version), model.provider, model.manifest.task, removed))
        asyncio.get_running_loop().create_task(entry.model.batcher.close())

    async def watch(self) -> None:
        """Poll the repository until cancelled. A failed scan is logged and the next one goes ahead:
        a watcher that died would leave the server serving stale versions with nothing said."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.refresh()
            except OSError as e:  # the folder vanished or is unreadable for a moment
                log.warning("cannot scan the model repository %s: %s", self.root, e)
            except Exception:
                log.exception("the repository watcher's scan of %s failed; it goes on at the next poll", self.root)

    def entries(self) -> tuple[VersionEntry, ...]:
        """Every version, by name then version: an immutable snapshot, safe to read from any thread."""
        return self._snapshot

    def loaded(self) -> list[LoadedModel]:
        """The models serving now (snapshot)."""
        return [e.model for e in self._snapshot if e.model is not None]

    def versions(self, name: str) -> list[VersionEntry]:
        found = [e for e in self._snapshot if e.name == name]
        if not found:
            known = ", ".join(sorted({e.name for e in self._snapshot})) or "none"
            raise NotFound(f"model {shown(name)} not found; models served: {known}")
        return found

    def entry(self, name: str, version: str) -> VersionEntry:
        """The entry for ``version`` (text), or the newest READY one when empty."""
        entries = self.versions(name)
        if not version:
            ready = [e for e in entries if e.state == READY]
            if not ready:
                states = "; ".join(f"v{e.version} {e.state} {e.message}" for e in entries)
                raise Unavailable(f"model {shown(name)} has no ready version: {states}")
            return ready[-1]
        number = parse_version(version)
        if number is None:
            raise InvalidArgument(f"version must be a positive whole number in ASCII digits (at most {MAX_VERSION_DIGITS}) "
                                  f"or empty (newest), got {shown(version)}")  # fmt: skip
        for e in entries:
            if e.version == number:
                return e
        listed = ", ".join(str(e.version) for e in entries)
        raise NotFound(f"model {shown(name)} has no version {number}; versions: {listed}")

    def resolve(self, name: str, version: str) -> LoadedModel:
        """The model to run for (name, version); NOT_FOUND or UNAVAILABLE otherwise."""
        e = self.entry(name, version)
        if e.state != READY or e.model is None:
            raise Unavailable(f"model {shown(name)} version {e.version} is {e.state}" + (f": {e.message}" if e.message else ""))
        return e.model

    def model_ready(self, name: str) -> bool:
        return any(e.state == READY for e in self._snapshot if e.name == name)

    async def close(self) -> None:
        for model in self.loaded():
            await model.batcher.close()
