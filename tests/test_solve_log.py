"""The cross-process solve log: rows written by one connection are read by another; without
its environment variable, or with an unusable path, it does nothing and raises nothing."""

import multiprocessing

from vllm_videoanchor.engine import solve_log


def _write_in_child(path):
    import os

    os.environ[solve_log.ENV] = path
    solve_log.write(0xABCDEF, 0.25, 42, False)


def test_rows_cross_processes(tmp_path, monkeypatch):
    path = str(tmp_path / "log" / "solves.sqlite")
    child = multiprocessing.get_context("spawn").Process(target=_write_in_child, args=(path,))
    child.start()
    child.join(60)
    monkeypatch.setenv(solve_log.ENV, path)
    assert solve_log.read([0xABCDEF, 0x123]) == [(0.25, 42, False)]


def test_off_without_the_variable(monkeypatch):
    monkeypatch.delenv(solve_log.ENV, raising=False)
    solve_log.write(1, 0.1, 1, True)
    assert solve_log.read([1]) == []


def test_unusable_path_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(solve_log.ENV, str(blocker / "sub" / "solves.sqlite"))
    solve_log.write(1, 0.1, 1, True)
    assert solve_log.read([1]) == []


def test_requests_find_their_items_digests_by_hash():
    solve_log.note_item("hash-a", 11)
    solve_log.note_item("hash-b", 22)
    solve_log.note_request("tag", ["hash-a", "unknown", "hash-b"])
    assert solve_log.take_request("tag") == [11, 22]
    assert solve_log.take_request("tag") == []  # taken once


def test_tables_are_bounded():
    for i in range(solve_log._BOUND + 10):
        solve_log.note_request(f"t{i}", [])
    assert len(solve_log._request_digests) == solve_log._BOUND
    assert solve_log.take_request("t0") == [] and "t9" not in solve_log._request_digests
