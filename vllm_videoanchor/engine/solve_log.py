"""Which solve served which request, across processes.

The solver runs in the engine's worker process; the HTTP server that answers the request
runs elsewhere. Workers append one row per solve, keyed by the item's digest (see
option.content_digest), to a SQLite file named by VIDEOANCHOR_SOLVE_LOG; the server reads
the rows of the digests its request carried. Without the variable (offline use) nothing is
written. Rows older than an hour are pruned as new ones arrive.

In the API-server process, the processor notes which digests each tagged request carried
(`note_request`) and the server takes them back when it answers (`take_request`); both
tables are bounded.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict

ENV = "VIDEOANCHOR_SOLVE_LOG"
KEEP_SECONDS = 3600.0

_local = threading.local()


def _connection() -> sqlite3.Connection | None:
    path = os.environ.get(ENV)
    if not path:
        return None
    conn = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "path", None) != path:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS solves (digest INTEGER PRIMARY KEY, seconds REAL, "
                         "iterations INTEGER, converged INTEGER, at REAL)")
        except (OSError, sqlite3.Error):  # reporting is best effort
            return None
        _local.conn, _local.path = conn, path
    return conn


def write(digest: int, seconds: float, iterations: int, converged: bool) -> None:
    conn = _connection()
    if conn is None or not digest:
        return
    now = time.time()
    try:
        conn.execute("INSERT OR REPLACE INTO solves VALUES (?, ?, ?, ?, ?)",
                     (digest, seconds, iterations, int(converged), now))
        conn.execute("DELETE FROM solves WHERE at < ?", (now - KEEP_SECONDS,))
    except sqlite3.Error:  # a report, never a reason to fail a request
        pass


def read(digests: list[int]) -> list[tuple[float, int, bool]]:
    """(seconds, iterations, converged) of the digests found, in order."""
    conn = _connection()
    if conn is None or not digests:
        return []
    rows = []
    try:
        for digest in digests:
            row = conn.execute("SELECT seconds, iterations, converged FROM solves WHERE digest = ?",
                               (digest,)).fetchone()
            if row:
                rows.append((row[0], row[1], bool(row[2])))
    except sqlite3.Error:
        return []
    return rows


_BOUND = 4096
_request_digests: OrderedDict[str, list[int]] = OrderedDict()
_digest_by_hash: OrderedDict[str, int] = OrderedDict()


def _remember(table: OrderedDict, key, value) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _BOUND:
        table.popitem(last=False)


def note_item(mm_hash: str, digest: int) -> None:
    """The digest of a multimodal item, by vLLM's hash (items served from a cache come
    back as their hash only)."""
    _remember(_digest_by_hash, mm_hash, digest)


def note_request(tag: str, mm_hashes: list[str]) -> None:
    # a joint group's members share one digest (one solve)
    _remember(_request_digests, tag, list(dict.fromkeys(d for d in map(_digest_by_hash.get, mm_hashes) if d)))


def take_request(tag: str) -> list[int]:
    return _request_digests.pop(tag, [])
