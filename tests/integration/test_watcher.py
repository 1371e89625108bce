"""BucketWatcher: only complete objects are reported, once, as (bucket, key)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aibackend.adapters.local import LocalObjectStore, atomic_write
from aibackend.local.watcher import BucketWatcher

STABLE_S = 0.2
#: The slow-writer test pauses for a fraction of this; the margin absorbs a busy machine.
SLOW_STABLE_S = 0.6


class Recorder:
    """Collects callbacks, with what the file held at that moment."""

    def __init__(self, root: Path, stable_s: float = STABLE_S) -> None:
        self.root = root
        self.stable_s = stable_s
        self.calls: list[tuple[str, str]] = []
        self.contents: list[bytes] = []
        self._cond = threading.Condition()

    def __call__(self, bucket: str, key: str) -> None:
        data = (self.root / bucket / key).read_bytes()
        with self._cond:
            self.calls.append((bucket, key))
            self.contents.append(data)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout_s: float = 5.0) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.calls) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.calls)

    def settle(self) -> list[tuple[str, str]]:
        """Calls once nothing more can arrive: past another stability window and a tick."""
        time.sleep(self.stable_s * 1.5)
        with self._cond:
            return list(self.calls)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, Recorder, BucketWatcher]]:
    root = tmp_path / "buckets"
    rec = Recorder(root)
    watcher = BucketWatcher(root, rec, stable_s=STABLE_S)
    watcher.start()
    try:
        yield root, rec, watcher
    finally:
        watcher.stop()


def _eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_write_then_rename_reports_once(watched: tuple[Path, Recorder, BucketWatcher]) -> None:
    # GIVEN a watcher on a root with an existing bucket folder
    root, rec, _ = watched
    (root / "raw").mkdir()
    # WHEN a file is written to a temp name and renamed into place
    atomic_write(root / "raw" / "batch-1.csv", b"a,b\n1,2\n")
    # THEN exactly one callback names the bucket and the key, with the whole file there
    assert rec.wait_for(1) == [("raw", "batch-1.csv")]
    assert rec.settle() == [("raw", "batch-1.csv")]
    assert rec.contents == [b"a,b\n1,2\n"]


def test_rename_is_reported_without_waiting_for_stability(tmp_path: Path) -> None:
    # GIVEN a watcher whose stability window is far longer than the test may wait
    root = tmp_path / "buckets"
    (root / "raw").mkdir(parents=True)
    rec = Recorder(root, stable_s=60)
    with BucketWatcher(root, rec, stable_s=60):
        # WHEN the object store writes an object (temp file, then rename)
        LocalObjectStore(root / "raw", bucket="raw").put("fast.json", b"{}")
        # THEN it is reported at once: a rename into place means the file is whole
        assert rec.wait_for(1, timeout_s=5) == [("raw", "fast.json")]


def test_nested_keys_in_new_folders(watched: tuple[Path, Recorder, BucketWatcher]) -> None:
    # GIVEN a watcher on an empty root
    root, rec, _ = watched
    # WHEN the object store writes nested keys into a bucket and folders that did not exist
    store = LocalObjectStore(root / "incoming", bucket="incoming")
    store.put("2026/11/27/transactions.csv", b"x" * 1000)
    store.put("2026/11/28/deep/er/more.json", b"{}")
    # THEN each key is reported once, with '/' separators, and the sidecar is never reported
    rec.wait_for(2)
    assert sorted(rec.settle()) == [
        ("incoming", "2026/11/27/transactions.csv"),
        ("incoming", "2026/11/28/deep/er/more.json"),
    ]


def test_slow_writer_reported_once_when_stable(tmp_path: Path) -> None:
    # GIVEN a watcher and a bucket folder
    root = tmp_path / "buckets"
    (root / "raw").mkdir(parents=True)
    rec = Recorder(root, SLOW_STABLE_S)
    watcher = BucketWatcher(root, rec, stable_s=SLOW_STABLE_S)
    watcher.start()
    chunks = [b"header\n", b"row 1\n", b"row 2\n", b"row 3\n"]
    # WHEN a file is written in place in chunks, pausing for less than the stability window
    with (root / "raw" / "slow.csv").open("wb") as f:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            time.sleep(SLOW_STABLE_S / 8)
            assert rec.calls == []  # never a partial report
    # THEN one callback follows once the file has settled, seeing the whole file
    try:
        assert rec.wait_for(1) == [("raw", "slow.csv")]
        assert rec.settle() == [("raw", "slow.csv")]
        assert rec.contents == [b"".join(chunks)]
    finally:
        watcher.stop()


def test_temp_dot_and_meta_files_are_ignored(
    watched: tuple[Path, Recorder, BucketWatcher],
) -> None:
    # GIVEN a watcher and a bucket folder
    root, rec, _ = watched
    bucket = root / "raw"
    (bucket / ".aib-meta" / "x").mkdir(parents=True)
    # WHEN temp, part, dot, metadata files, a bare folder and a file outside any bucket appear
    (bucket / "upload.csv.tmp").write_bytes(b"partial")
    (bucket / "download.bin.part").write_bytes(b"partial")
    (bucket / ".hidden").write_bytes(b"secret")
    (bucket / ".aib-meta" / "x" / "y.json").write_bytes(b"{}")
    (bucket / "empty-folder").mkdir()
    (root / "stray.txt").write_bytes(b"no bucket")
    # ... and then one real object
    atomic_write(bucket / "real.csv", b"ok")
    # THEN only the real object is reported
    rec.wait_for(1)
    assert rec.settle() == [("raw", "real.csv")]


def test_ignore_once_swallows_the_next_sighting(
    watched: tuple[Path, Recorder, BucketWatcher],
) -> None:
    # GIVEN a watcher told to ignore the next write of one key
    root, rec, watcher = watched
    (root / "raw").mkdir()
    watcher.ignore_once("raw", "own.csv")
    # WHEN that key is written twice and another key once
    atomic_write(root / "raw" / "own.csv", b"v1")
    atomic_write(root / "raw" / "other.csv", b"o")
    assert rec.wait_for(1) == [("raw", "other.csv")]
    atomic_write(root / "raw" / "own.csv", b"v2")
    # THEN only the second write of the ignored key is reported
    rec.wait_for(2)
    assert rec.settle() == [("raw", "other.csv"), ("raw", "own.csv")]
    assert rec.contents[-1] == b"v2"


def test_stop_ends_the_thread(tmp_path: Path) -> None:
    # GIVEN a started watcher
    watcher = BucketWatcher(tmp_path, lambda b, k: None, stable_s=STABLE_S)
    watcher.start()
    # WHEN it is stopped
    watcher.stop()
    # THEN its thread is gone and it can be started again
    assert _eventually(
        lambda: not any(t.name == "aib-bucket-watcher" for t in threading.enumerate())
    )
    watcher.start()
    watcher.stop()
