"""Store backends behind :class:`candor.server.core.store.Store`: SQLite (embedded) and PostgreSQL (fleets).

>>> store = open_store(Settings.load(cli={"store": "postgresql://candor:secret@db:5432/candor"}))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from candor.server.core.settings import Settings
from candor.server.core.store import Store

SQLITE_FILE = "feedback.sqlite3"  # under data_dir, when the store setting is empty


def open_store(settings: Settings) -> Store:
    """The store the settings name: empty for SQLite under ``data_dir``, ``sqlite:///PATH``, or a
    PostgreSQL URL. Raises ValueError for a malformed URL and StoreError when it cannot be opened."""
    url = settings.store
    if url.startswith(("postgresql://", "postgres://")):
        from candor.server.store.postgres import PostgresStore  # psycopg only where PostgreSQL is used

        return PostgresStore(url, timeout_s=settings.store_timeout_s, wait=not settings.store_optional)
    from candor.server.store.sqlite import SQLiteStore

    path = Path(url.removeprefix("sqlite://")) if url else Path(settings.data_dir) / SQLITE_FILE
    return SQLiteStore(path, settings.feedback_store_max_bytes)
