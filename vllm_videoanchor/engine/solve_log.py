"""Which solve served which request, across processes.

The solver runs in the engine's worker process; the HTTP server that answers the request
runs elsewhere. Workers record one outcome per solve (applied, with its statistics, or
failed, with the reason), keyed by the item's digest (see option.content_digest), in a
SQLite file (settings.solve_log); the server reads the outcomes of the digests its request
carried. Writes go through a queue to a background thread, so the model step never waits
on the disk. Rows older than a day are pruned as new ones arrive. Each applied solve also
leaves its per-token scores and cluster labels (float32 / int32 blobs, the newest
KEEP_ANCHOR_MAPS only): what the server's explain route returns.

In the API-server process, the processor notes which digests each tagged request carried
(`REQUEST_ITEMS.note_request`, from the processor's thread pool) and the middleware takes
them back when it answers (from the event loop): the tables are bounded and locked.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("vllm.videoanchor")

KEEP_SECONDS = 86400.0
_ENGINE = object()  # the queue's key for the engine's start-up verdict
_SOLVE_COLUMNS = {"digest": "INTEGER PRIMARY KEY", "seconds": "REAL", "iterations": "INTEGER", "converged": "INTEGER",
                  "error": "TEXT", "at": "REAL", "distance": "REAL", "stopped_by": "TEXT"}
_SCHEMA = f"CREATE TABLE IF NOT EXISTS solves ({', '.join(f'{k} {v}' for k, v in _SOLVE_COLUMNS.items())})"
_ANCHORS_SCHEMA = "CREATE TABLE IF NOT EXISTS anchors (digest INTEGER PRIMARY KEY, score BLOB, labels BLOB, at REAL)"
KEEP_ANCHOR_MAPS = 256  # at the server's default bound of 4096 tokens, at most 8 MiB
_ANCHORS = object()  # the queue's key for an anchor map
# one row: why the engines cannot anchor (NULL when they can), written at their start-up
_ENGINE_SCHEMA = "CREATE TABLE IF NOT EXISTS engine (id INTEGER PRIMARY KEY CHECK (id = 0), unavailable TEXT, at REAL)"


@dataclass(frozen=True)
class AnchorMap:
    """One solve's per-token scores in [0, 1] and cluster labels, in token order."""

    score: list[float]
    labels: list[int]


@dataclass(frozen=True)
class SolveOutcome:
    """What happened to one anchored item (or joint group) in the engine."""

    seconds: float = 0.0
    iterations: int = 0
    converged: bool = False
    error: str | None = None  # why the item was served plain; None when anchored
    # the ADMM's estimated ||C - C*||_F / ||C||_F where it stopped; None: not given, or the
    # solve stopped on its residual, where the estimate had not settled (it can be far above tol)
    distance: float | None = None
    stopped_by: str | None = None  # what ended the ADMM (ssc.iteration.STOPS, "none": no ADMM; None: not given)

    @classmethod
    def of(cls, gains) -> SolveOutcome:
        """The outcome of a solve that anchored its item (anchor.AnchorGains)."""
        distance = None if gains.stopped_by == "residual" else gains.distance
        return cls(gains.seconds, gains.n_iter, gains.converged, distance=distance, stopped_by=gains.stopped_by)

    @property
    def applied(self) -> bool:
        return self.error is None


class SolveLog:
    """The SQLite file shared by engines (writers) and servers (readers). A path of None,
    or one that cannot be opened, makes it a no-op: reporting never fails a request."""

    def __init__(self, path: str | None):
        self.path = path
        self._queue: queue.SimpleQueue | None = None
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def record(self, digest: int, outcome: SolveOutcome) -> None:
        """Queue an outcome for the background writer (returns at once)."""
        if not self.path or not digest:
            return
        self._put((digest, outcome, time.time()))

    def record_anchors(self, digest: int, score, labels) -> None:
        """Queue a solve's scores and labels (tensors or arrays of N values; copied now)."""
        if not self.path or not digest:
            return
        score = np.asarray(score.cpu() if hasattr(score, "cpu") else score, dtype=np.float32).tobytes()
        labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels, dtype=np.int32).tobytes()
        self._put((_ANCHORS, (digest, score, labels), time.time()))

    def read_anchors(self, digest: int) -> AnchorMap | None:
        """The scores and labels of one solve, if still kept."""
        conn = self._connection()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT score, labels FROM anchors WHERE digest = ?", (digest,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        return AnchorMap(np.frombuffer(row[0], np.float32).tolist(), np.frombuffer(row[1], np.int32).tolist())

    def record_engine(self, unavailable: str | None) -> None:
        """The engine's start-up verdict: why it cannot anchor, or None (it can)."""
        if self.path:
            self._put((_ENGINE, unavailable, time.time()))

    def engine_unavailable(self) -> str | None:
        """Why the engines cannot anchor, as they reported it (None: they can, or have not said)."""
        conn = self._connection()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT unavailable FROM engine WHERE id = 0").fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def _put(self, item) -> None:
        with self._lock:
            if self._writer is None:
                self._queue = queue.SimpleQueue()
                self._writer = threading.Thread(target=self._write_forever, name="videoanchor-solve-log",
                                                daemon=True)
                self._writer.start()
        self._queue.put(item)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued outcome is on disk (tests, shutdown)."""
        if self._writer is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def read(self, digests: list[int]) -> dict[int, SolveOutcome]:
        """The outcomes found for these digests."""
        conn = self._connection()
        if conn is None or not digests:
            return {}
        found = {}
        try:
            for digest in digests:
                row = conn.execute("SELECT seconds, iterations, converged, error, distance, stopped_by FROM solves "
                                   "WHERE digest = ?", (digest,)).fetchone()
                if row:
                    found[digest] = SolveOutcome(row[0], row[1], bool(row[2]), row[3], row[4], row[5])
        except sqlite3.Error:
            return {}
        return found

    def _write_forever(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            digest, outcome, at = item
            conn = self._connection()
            if conn is None:
                continue
            try:
                if digest is _ENGINE:
                    conn.execute("INSERT OR REPLACE INTO engine VALUES (0, ?, ?)", (outcome, at))
                    continue
                if digest is _ANCHORS:
                    conn.execute("INSERT OR REPLACE INTO anchors VALUES (?, ?, ?, ?)", (*outcome, at))
                    conn.execute("DELETE FROM anchors WHERE digest NOT IN "
                                 "(SELECT digest FROM anchors ORDER BY at DESC LIMIT ?)", (KEEP_ANCHOR_MAPS,))
                    continue
                conn.execute("INSERT OR REPLACE INTO solves VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (digest, outcome.seconds, outcome.iterations, int(outcome.converged), outcome.error,
                              at, outcome.distance, outcome.stopped_by))
                conn.execute("DELETE FROM solves WHERE at < ?", (at - KEEP_SECONDS,))
            except sqlite3.Error as exc:  # a report, never a reason to fail a request
                logger.debug("videoanchor: solve log write failed: %s", exc)

    def _connection(self) -> sqlite3.Connection | None:
        """One connection per thread (sqlite3 connections are not shared across threads)."""
        if not self.path:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                columns = [column[1] for column in conn.execute("PRAGMA table_info(solves)")]
                if columns and columns != list(_SOLVE_COLUMNS):  # another version's file: reports, not records
                    conn.execute("DROP TABLE solves")
                conn.execute(_SCHEMA)
                conn.execute(_ENGINE_SCHEMA)
                conn.execute(_ANCHORS_SCHEMA)
            except (OSError, sqlite3.Error):
                return None
            self._local.conn = conn
        return conn


class RequestItems:
    """Per request tag, the digests of its anchored items (API-server process; thread-safe)."""

    BOUND = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._digests_by_tag: OrderedDict[str, list[int]] = OrderedDict()
        self._digest_by_hash: OrderedDict[str, int] = OrderedDict()

    def note_item(self, mm_hash: str, digest: int) -> None:
        """The digest of a multimodal item, by vLLM's hash (items served from a cache come
        back as their hash only)."""
        with self._lock:
            self._remember(self._digest_by_hash, mm_hash, digest)

    def note_request(self, tag: str, mm_hashes: list[str]) -> None:
        with self._lock:
            # a joint group's members share one digest (one solve)
            digests = list(dict.fromkeys(d for d in map(self._digest_by_hash.get, mm_hashes) if d))
            self._remember(self._digests_by_tag, tag, digests)

    def take_request(self, tag: str) -> list[int]:
        with self._lock:
            return self._digests_by_tag.pop(tag, [])

    def __len__(self) -> int:
        with self._lock:
            return len(self._digests_by_tag)

    def _remember(self, table: OrderedDict, key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.BOUND:
            table.popitem(last=False)


REQUEST_ITEMS = RequestItems()  # the API-server process's registry (processor -> middleware)
