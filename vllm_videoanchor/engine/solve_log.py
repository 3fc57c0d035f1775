"""Which solve served which request, across processes.

The solver runs in the engine's worker process; the HTTP server that answers the request
runs elsewhere. Workers append one row per solve, keyed by the item's digest (see
option.content_digest), to a SQLite file named by VIDEOANCHOR_SOLVE_LOG; the server reads
the rows of the digests its request carried. Without the variable (offline use) nothing is
written. Rows older than an hour are pruned as new ones arrive.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

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
