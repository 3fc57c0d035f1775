"""The cross-process solve log and the API server's request tables: outcomes written by one
process are read by another; writes never wait on the disk; without a path, or with an
unusable one, nothing happens and nothing raises; the request tables are bounded."""

import multiprocessing
import sqlite3
import time

import numpy as np
import torch

from vllm_videoanchor.engine import solve_log
from vllm_videoanchor.engine.solve_log import AnchorMap, RequestItems, SolveLog, SolveOutcome


def _write_in_child(path):
    log = SolveLog(path)
    log.record_anchors(0xABCDEF, torch.tensor([0.0, 0.5, 1.0]), torch.tensor([2, 0, 2]))
    log.record(0xABCDEF, SolveOutcome(0.25, 42, False))
    log.record(0xFACE, SolveOutcome(error="LinAlgError: not positive-definite"))
    log.flush()


def test_rows_cross_processes(tmp_path):
    path = str(tmp_path / "log" / "solves.sqlite")
    child = multiprocessing.get_context("spawn").Process(target=_write_in_child, args=(path,))
    child.start()
    child.join(60)
    found = SolveLog(path).read([0xABCDEF, 0x123, 0xFACE])
    assert found[0xABCDEF] == SolveOutcome(0.25, 42, False) and found[0xABCDEF].applied
    assert not found[0xFACE].applied and "not positive-definite" in found[0xFACE].error
    assert 0x123 not in found
    assert SolveLog(path).read_anchors(0xABCDEF) == AnchorMap([0.0, 0.5, 1.0], [2, 0, 2])
    assert SolveLog(path).read_anchors(0xFACE) is None  # a failed solve leaves no map


def test_anchor_maps_are_bounded(tmp_path, monkeypatch):
    """Only the newest maps are kept (each is N floats and N labels)."""
    monkeypatch.setattr(solve_log, "KEEP_ANCHOR_MAPS", 3)
    log = SolveLog(str(tmp_path / "solves.sqlite"))
    for digest in range(1, 6):
        log.record_anchors(digest, np.full(4, digest / 10), np.arange(4))
        time.sleep(0.01)  # distinct timestamps
    log.flush()
    assert [d for d in range(1, 6) if log.read_anchors(d) is not None] == [3, 4, 5]
    np.testing.assert_allclose(log.read_anchors(5).score, [0.5] * 4)


def _engine_verdict_in_child(path, reason):
    log = SolveLog(path)
    log.record_engine(reason)
    log.flush()


def test_the_engines_start_up_verdict_crosses_processes(tmp_path):
    """An engine that cannot anchor says why at start-up; the server reads it (and a
    restarted engine that can anchor clears it)."""
    path = str(tmp_path / "solves.sqlite")
    assert SolveLog(path).engine_unavailable() is None  # nothing said yet
    for reason in ("anchored attention is not available on the FLEX_ATTENTION attention backend", None):
        child = multiprocessing.get_context("spawn").Process(target=_engine_verdict_in_child, args=(path, reason))
        child.start()
        child.join(60)
        assert SolveLog(path).engine_unavailable() == reason
    assert SolveLog(None).engine_unavailable() is None


def test_off_without_a_path():
    log = SolveLog(None)
    log.record(1, SolveOutcome(0.1, 1, True))
    log.flush()
    assert log.read([1]) == {}


def test_unusable_path_is_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    log = SolveLog(str(blocker / "sub" / "solves.sqlite"))
    log.record(1, SolveOutcome(0.1, 1, True))
    log.flush()
    assert log.read([1]) == {}


def test_recording_never_waits_on_the_disk(tmp_path):
    """The model step records an outcome while another process holds the database locked:
    the call returns at once (before: up to sqlite's 5 s busy timeout inside the step), and
    the row lands once the lock is gone."""
    path = str(tmp_path / "solves.sqlite")
    log = SolveLog(path)
    log.record(7, SolveOutcome(0.5, 3, True))
    log.flush()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    start = time.perf_counter()
    log.record(8, SolveOutcome(0.5, 3, True))
    assert time.perf_counter() - start < 0.5
    locker.execute("COMMIT")
    log.flush()
    assert 8 in log.read([8])


def test_requests_find_their_items_digests_by_hash():
    items = RequestItems()
    items.note_item("hash-a", 11)
    items.note_item("hash-b", 22)
    items.note_request("tag", ["hash-a", "unknown", "hash-b"])
    assert items.take_request("tag") == [11, 22]
    assert items.take_request("tag") == []  # taken once


def test_tables_are_bounded():
    items = RequestItems()
    for i in range(items.BOUND + 10):
        items.note_request(f"t{i}", [])
    assert len(items) == items.BOUND
    assert items.take_request("t0") == [] and items.take_request("t9") == []


def test_a_distance_is_reported_only_where_it_means_what_it_says():
    """After a stop on the residual the distance estimate has not settled (the demo's header
    said 0.257 where tol is 0.02): the outcome says which test stopped the solve and leaves
    the distance out; after the distance test it is below tol."""
    import official

    from vllm_videoanchor.anchor import AnchorParams, compute_anchor_gains
    from vllm_videoanchor.ssc.params import SOLVER_MODE

    tokens = torch.tensor(np.random.default_rng(0).standard_normal((40, 16)), dtype=torch.float32)
    by_residual = compute_anchor_gains(tokens, AnchorParams(n_clusters=3, solver_mode="reference"))
    assert by_residual.stopped_by == "residual" and by_residual.distance is not None
    outcome = SolveOutcome.of(by_residual)
    assert (outcome.stopped_by, outcome.distance, outcome.iterations) == ("residual", None, by_residual.n_iter)
    video = torch.tensor(official.video_tokens(frames=4), dtype=torch.float32)
    by_distance = compute_anchor_gains(video, AnchorParams(n_clusters=3))
    assert by_distance.stopped_by == "distance"
    assert SolveOutcome.of(by_distance).distance == by_distance.distance < SOLVER_MODE["fast"].tol
