"""Checking a cache file, and the two ways back from a damaged one: `repair` (keep every row still readable) and
`reset` (start empty). Both always leave a working cache behind; neither needs the damaged file to open cleanly.

A damaged file is moved aside (`<name>.damaged-<time>`), not deleted, by `repair`: what could not be read may still
matter to someone with better tools. `reset` deletes it: the user asked for an empty cache.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from a3cli.llm._cache import _TABLES, Cache, CacheDamagedError, damage_detail

_SIDE_FILES = ("-wal", "-shm", "-journal")


class CacheHealth(BaseModel):
    path: str
    ok: bool
    exists: bool
    problems: list[str] = []
    replies: int | None = None
    results: int | None = None


class RepairReport(BaseModel):
    path: str
    was_damaged: bool
    kept_replies: int
    kept_results: int
    damaged_copy: str | None = None


def check_cache(path: Path) -> CacheHealth:
    """SQLite's own page-level check (`PRAGMA quick_check`) plus the row counts; never raises for damage."""
    path = Path(path)
    if not path.exists():
        return CacheHealth(path=str(path), ok=True, exists=False)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        return CacheHealth(path=str(path), ok=False, exists=True, problems=[f"cannot open: {e}"])
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        problems = [] if rows == ["ok"] else rows[:20]
        counts = {}
        if not problems:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in _TABLES:
                counts[table] = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] if table in names else 0
        return CacheHealth(
            path=str(path), ok=not problems, exists=True, problems=problems,
            replies=counts.get("responses"), results=counts.get("results"),
        )
    except sqlite3.DatabaseError as e:
        return CacheHealth(path=str(path), ok=False, exists=True, problems=[damage_detail(e)])
    finally:
        conn.close()


def ensure_readable(path: Path) -> None:
    """Raise CacheDamagedError, naming the file, when the cache cannot be read. Run before any model is loaded."""
    health = check_cache(path)
    if not health.ok:
        raise CacheDamagedError(Path(path), health.problems[0] if health.problems else "unreadable")


def _rows(conn: sqlite3.Connection, table: str, order: str) -> Iterator[tuple[Any, ...]]:
    """Rows of `table` in rowid order (`order` ASC or DESC), until the first unreadable page."""
    cur = conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid {order}")
    while True:
        try:
            row = cur.fetchone()
        except sqlite3.DatabaseError:
            return
        if row is None:
            return
        yield row


def _salvage(path: Path) -> tuple[dict[str, dict[int, tuple[Any, ...]]], bool]:
    """Every row still readable, per table, read forwards and then backwards past a damaged stretch."""
    found: dict[str, dict[int, tuple[Any, ...]]] = {t: {} for t in _TABLES}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return found, False
    try:
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError:
            return found, False  # not a database at all (or its schema page is gone)
        for table in _TABLES:
            if table not in names:
                continue
            for order in ("ASC", "DESC"):
                try:
                    for row in _rows(conn, table, order):
                        found[table][row[0]] = row[1:]
                except sqlite3.DatabaseError:
                    continue
        return found, True
    finally:
        conn.close()


def _move_aside(path: Path, suffix: str) -> Path | None:
    moved = None
    for extra in ("", *_SIDE_FILES):
        src = Path(f"{path}{extra}")
        if src.exists():
            dst = Path(f"{path}.{suffix}{extra}")
            os.replace(src, dst)
            moved = moved or dst
    return moved


def repair_cache(path: Path) -> RepairReport:
    """Leave a healthy cache at `path` keeping every readable row. A healthy file is left as it is."""
    path = Path(path)
    health = check_cache(path)
    if health.ok:
        return RepairReport(path=str(path), was_damaged=False, kept_replies=health.replies or 0, kept_results=health.results or 0)
    found, _ = _salvage(path)
    fresh = Path(f"{path}.repair-{os.getpid()}")
    for extra in ("", *_SIDE_FILES):
        Path(f"{fresh}{extra}").unlink(missing_ok=True)
    with Cache(fresh) as cache:  # creates the schema, owner-only permissions
        conn = cache._connect()
        for table, rows in found.items():
            if rows:
                width = len(next(iter(rows.values())))
                cache._write(lambda c, t=table, r=rows, w=width: c.executemany(
                    f"INSERT OR REPLACE INTO {t} VALUES ({','.join('?' * w)})", list(r.values())))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damaged = _move_aside(path, f"damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(fresh, path)
    for extra in _SIDE_FILES:
        Path(f"{fresh}{extra}").unlink(missing_ok=True)
    return RepairReport(
        path=str(path), was_damaged=True, kept_replies=len(found["responses"]), kept_results=len(found["results"]),
        damaged_copy=str(damaged) if damaged else None,
    )


def reset_cache(path: Path) -> None:
    """Delete the cache file (and SQLite's side files) whatever state it is in; the next open makes a new one."""
    for extra in ("", *_SIDE_FILES):
        Path(f"{path}{extra}").unlink(missing_ok=True)
