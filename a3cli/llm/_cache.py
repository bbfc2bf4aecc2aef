"""A content-addressed response cache in SQLite, safe for several processes at once.

The key is the SHA-256 of the canonical JSON of everything that changes a reply: provider, model id, the provider's
identity (endpoint, or for local models the weights/adapter content fingerprints and dtype), messages, prefill, the
sampling config and the sample index. Nothing else enters it: no API key, timeout, concurrency, batch size or role.

Only successful replies are stored. The same file has a second table, `results`, for whole measurements that are
too costly to repeat (capability through lm-eval plus KL drift): one JSON payload per content key, which the caller
builds from everything that changes the numbers (see `a3cli.evaluate._capability_cache`). `clear` and `prune` delete from
both tables; `len()`, `get`, `export` and the `entries`/`by_model` statistics are about replies only.

WAL mode lets readers run beside one writer; writes are short `BEGIN IMMEDIATE`
transactions with a busy timeout, retried when SQLite still reports the database busy or locked.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from pydantic import BaseModel

from a3cli._paths import user_cache_dir
from a3cli.errors import InfrastructureError
from a3cli.llm._types import Request, Response
from a3cli.spec import GenerateConfig, ModelRef

CacheMode = Literal["normal", "no_cache", "refresh"]
CACHE_MODES: tuple[str, ...] = ("normal", "no_cache", "refresh")
KEY_VERSION = 1
_BUSY_TIMEOUT_MS = 30_000
_LOCK_RETRIES = 8
_IN_CHUNK = 500  # keys per `IN (...)` query, under SQLite's variable limit

T = TypeVar("T")

# A rowid table (not WITHOUT ROWID): rows are ~1-2 KB, and appending them with a small key index writes ~3x faster.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses(created);
CREATE INDEX IF NOT EXISTS responses_model ON responses(model);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_created ON results(created);
CREATE INDEX IF NOT EXISTS results_model ON results(model);
"""
_TABLES = ("responses", "results")


def default_cache_path() -> Path:
    """$A3_CACHE if set, else user_cache_dir()/llm-cache.sqlite."""
    env = os.environ.get("A3_CACHE")
    return Path(env).expanduser() if env else user_cache_dir() / "llm-cache.sqlite"


_CONFIG_FIELDS = tuple(sorted(GenerateConfig.model_fields))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def target_json(ref: ModelRef, identity: dict[str, Any]) -> str:
    """The model half of the key: provider, model id and the provider's identity (endpoint, weight fingerprints)."""
    return canonical_json({"identity": identity, "model": ref.model, "provider": ref.provider})


def call_json(request: Request) -> str:
    """The request half of the key. Every GenerateConfig field changes the output (see its docstring), so all are in."""
    cfg = request.config
    return canonical_json(
        {
            "config": {name: getattr(cfg, name) for name in _CONFIG_FIELDS},
            "messages": [[m.role, m.content] for m in request.messages],
            "prefill": request.prefill,
            "sample_index": request.sample_index,
        }
    )


def cache_key(request: Request, identity: dict[str, Any]) -> tuple[str, str]:
    """(hex SHA-256 key, the canonical JSON it hashes) for `request`, given its provider's identity for its model."""
    return key_for(request, target_json(request.model, identity))


def key_for(request: Request, target: str) -> tuple[str, str]:
    """The key from the model half already serialised (the engine does that once per model per batch).

    The JSON is `canonical_json({"call": ..., "target": ..., "v": KEY_VERSION})`, assembled from its two halves.
    """
    text = f'{{"call":{call_json(request)},"target":{target},"v":{KEY_VERSION}}}'
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


class CacheStats(BaseModel):
    path: str
    entries: int
    size_bytes: int
    oldest: float | None = None
    newest: float | None = None
    by_model: dict[str, int] = {}
    results: int = 0  # stored measurement results (capability + KL drift), apart from the `entries` replies
    results_by_kind: dict[str, int] = {}


class CacheDamagedError(InfrastructureError):
    """The cache file is not a readable SQLite database (truncated, overwritten, garbage). Names the file and the way
    out; `a3 cache repair` keeps what can still be read, `a3 cache clear` always starts afresh."""

    def __init__(self, path: Path, detail: str):
        super().__init__(
            f"the LLM cache {path} is damaged ({detail}). `a3 cache repair` keeps what can still be read; "
            f"`a3 cache clear --yes` replaces it with an empty one"
        )
        self.path = path


def damage_detail(e: sqlite3.DatabaseError) -> str:
    text = str(e).lower()
    if "not a database" in text:
        return "it is not an SQLite database"
    if "malformed" in text or "corrupt" in text:
        return "its content is malformed, e.g. the file was cut short"
    return text or "unreadable"


def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


class Cache:
    """One SQLite file. Methods are thread-safe; a process that forks gets its own connection."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------------ connection

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                # Prompts and replies can be sensitive: the file is readable by its owner only.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise InfrastructureError(f"Cannot open the LLM cache at {self.path}: {e}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut may lose the last commits, never corrupt
            self._retry(lambda: conn.executescript(_SCHEMA))  # idempotent, so a retry after SQLITE_BUSY is safe
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(_LOCK_RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "malformed" in str(e).lower():
                    raise CacheDamagedError(self.path, damage_detail(e)) from None
                if not _is_busy(e) or attempt == _LOCK_RETRIES - 1:
                    raise InfrastructureError(f"LLM cache {self.path}: {e}") from None
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
            except sqlite3.DatabaseError as e:  # not a database, malformed pages: no retry will help
                raise CacheDamagedError(self.path, damage_detail(e)) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ read / write

    def get(self, key: str) -> Response | None:
        """The stored response, marked cached=True, or None."""
        with self._lock:
            conn = self._connect()
            row = self._retry(lambda: conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone())
        return _hit(row[0]) if row else None

    def get_many(self, keys: Sequence[str]) -> dict[str, Response]:
        found: dict[str, Response] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connect()
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                sql = f"SELECT key, response FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                rows = self._retry(lambda: conn.execute(sql, chunk).fetchall())
                for key, text in rows:
                    found[key] = _hit(text)
        return found

    def put(self, key: str, request_json: str, response: Response, *, provider: str, model: str) -> None:
        self.put_many([(key, request_json, response, provider, model)])

    def put_many(self, rows: Iterable[tuple[str, str, Response, str, str]]) -> int:
        """Store (key, request JSON, response, provider, model) rows in one short transaction. Failed responses are
        refused: errors, timeouts and content-filter stops are never cached."""
        now = time.time()
        data = []
        for key, request_json, response, provider, model in rows:
            if not response.ok:
                raise ValueError("only successful responses may be cached")
            stored = response.model_dump_json(exclude={"cached"})
            data.append((key, provider, model, now, request_json, stored))
        if not data:
            return 0
        self._write(lambda conn: conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)", data))
        return len(data)

    def _write(self, statements: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `statements` in one short `BEGIN IMMEDIATE` transaction (retried while the file is busy); returns what
        they return."""
        with self._lock:
            conn = self._connect()

            def transaction() -> Any:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = statements(conn)
                    conn.execute("COMMIT")
                    return out
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

            return self._retry(transaction)

    def get_result(self, key: str) -> dict[str, Any] | None:
        """The payload stored by `put_result` under `key`, or None."""
        with self._lock:
            conn = self._connect()
            row = self._retry(lambda: conn.execute("SELECT payload FROM results WHERE key = ?", (key,)).fetchone())
        if row is None:
            return None
        try:
            payload = json.loads(row[0])
        except ValueError:
            return None  # a damaged row is a miss; the next put_result replaces it
        return payload if isinstance(payload, dict) else None

    def put_result(self, key: str, kind: str, model: str, payload: dict[str, Any]) -> None:
        """Store (or replace) one measurement result. `payload` must be JSON-serialisable (no NaN) and hold no secrets:
        it is written as is. `model` is the model id that `prune(model=...)` matches."""
        text = canonical_json(payload)
        row = (key, kind, model, time.time(), text)
        sql = "INSERT OR REPLACE INTO results (key, kind, model, created, payload) VALUES (?, ?, ?, ?, ?)"
        self._write(lambda conn: conn.execute(sql, row))

    def __contains__(self, key: str) -> bool:
        with self._lock:
            conn = self._connect()
            return self._retry(lambda: conn.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone()) is not None

    def __len__(self) -> int:
        with self._lock:
            conn = self._connect()
            return int(self._retry(lambda: conn.execute("SELECT COUNT(*) FROM responses").fetchone())[0])

    # ------------------------------------------------------------------------------------------------ maintenance

    def stats(self) -> CacheStats:
        with self._lock:
            conn = self._connect()
            count, oldest, newest = self._retry(
                lambda: conn.execute("SELECT COUNT(*), MIN(created), MAX(created) FROM responses").fetchone()
            )
            by_model = self._retry(
                lambda: conn.execute(
                    "SELECT provider || ':' || model, COUNT(*) FROM responses GROUP BY provider, model ORDER BY 2 DESC"
                ).fetchall()
            )
            by_kind = self._retry(lambda: conn.execute("SELECT kind, COUNT(*) FROM results GROUP BY kind ORDER BY 2 DESC").fetchall())
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheStats(
            path=str(self.path),
            entries=count,
            size_bytes=size,
            oldest=oldest,
            newest=newest,
            by_model=dict(by_model),
            results=sum(n for _, n in by_kind),
            results_by_kind=dict(by_kind),
        )

    def prune(self, *, older_than_days: float | None = None, model: str | None = None) -> int:
        """Delete replies and stored results written more than `older_than_days` ago and/or for `model` (exact model
        id); returns how many rows of both kinds."""
        if older_than_days is None and model is None:
            raise ValueError("prune needs older_than_days and/or model")
        clauses, params = [], []
        if older_than_days is not None:
            clauses.append("created < ?")
            params.append(time.time() - older_than_days * 86400)
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        return self._delete(" AND ".join(clauses), params)

    def clear(self) -> int:
        """Delete every reply and every stored result; returns how many rows of both kinds."""
        return self._delete("1", [])

    def _delete(self, where: str, params: list[Any]) -> int:
        with self._lock:
            conn = self._connect()
            # Both tables have `model` and `created`, so one WHERE clause serves both.
            n = int(self._write(lambda c: sum(c.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount for table in _TABLES)))
            if n:
                # Hand freed pages back to the file system; wal_checkpoint first so VACUUM sees every page.
                self._retry(lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
                try:
                    conn.execute("VACUUM")
                except sqlite3.OperationalError:
                    pass  # another process is reading; the space is reused by later writes anyway
        return n

    def iter_entries(self, *, model: str | None = None, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every entry as {key, provider, model, created, request, response}, in key order, read a page at a time so
        neither memory nor the lock is held for the whole export."""
        last = ""
        while True:
            sql = "SELECT key, provider, model, created, request, response FROM responses WHERE key > ?"
            params: list[Any] = [last]
            if model is not None:
                sql += " AND model = ?"
                params.append(model)
            sql += " ORDER BY key LIMIT ?"
            params.append(page)
            with self._lock:
                conn = self._connect()
                rows = self._retry(lambda: conn.execute(sql, params).fetchall())
            for key, provider, model_id, created, request_json, response_json in rows:
                yield {
                    "key": key,
                    "provider": provider,
                    "model": model_id,
                    "created": created,
                    "request": json.loads(request_json),
                    "response": json.loads(response_json),
                }
            if len(rows) < page:
                return
            last = rows[-1][0]

    def export_jsonl(self, out: IO[str], *, model: str | None = None) -> int:
        n = 0
        for entry in self.iter_entries(model=model):
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            n += 1
        return n


def _hit(text: str) -> Response:
    # Stored rows are `model_dump_json(exclude={"cached"})`, a JSON object; splicing the flag in before the closing
    # brace validates once instead of validating and then going through pydantic's __setattr__ (half the hit cost).
    return Response.model_validate_json(text[:-1] + ',"cached":true}')
