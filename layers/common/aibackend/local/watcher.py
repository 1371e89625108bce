"""Object-created detection for local buckets: `<root>/<bucket>/<key>` files, reported complete.

A file is complete when it

- appeared by a rename (write-then-rename, like `LocalObjectStore` and most tools that write
  atomically): reported as soon as the rename is seen; or
- kept the same size and mtime for `stable_s` seconds with no change event in between (a file
  copied or written in place): reported once it settles. A writer that pauses for longer than
  `stable_s` in the middle of a file is indistinguishable from one that finished; raise
  `stable_s` for such writers.

Ignored: anything under a dot folder (`.aib-meta/`, `.git/`...), dotfiles, `*.tmp` and `*.part`
files, directories themselves, and files directly under `root` (they belong to no bucket).
Objects that already exist when `start()` returns are not reported; only ones completed later.

Writes made by the local object store itself are reported too. The runtime, which notifies
those itself (it knows the etag and the request), calls `ignore_once(bucket, key)` *before*
the write so the watcher swallows its next sighting of that key; an unused ignore expires after
`ignore_ttl_s`. A key written twice is reported twice (S3 sends one event per PUT), but one
version of a file (same inode, size and mtime) is reported at most once.

`on_object(bucket, key)` runs on the watcher's thread; an exception it raises is logged and
the watcher carries on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_TEMP_SUFFIXES = (".tmp", ".part")

#: (inode, size, mtime_ns): one version of a file's content.
_Signature = tuple[int, int, int]


@dataclass
class _Pending:
    signature: _Signature
    since: float


def _is_temp_name(name: str) -> bool:
    """Dotfiles and `*.tmp`/`*.part`: where writers put a file before renaming it into place."""
    return name.startswith(".") or name.endswith(_TEMP_SUFFIXES)


def _signature(path: Path) -> _Signature | None:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not path.is_file():
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class BucketWatcher:
    """Watches `<root>/<bucket>/**` on a background thread and reports complete objects."""

    def __init__(
        self,
        root: Path,
        on_object: Callable[[str, str], None],
        *,
        stable_s: float = 0.5,
        ignore_ttl_s: float = 30.0,
        force_polling: bool | None = None,
    ) -> None:
        if stable_s <= 0:
            raise ValueError(f"stable_s must be positive, got {stable_s}")
        self.root = root.resolve()
        self.on_object = on_object
        self.stable_s = stable_s
        self.ignore_ttl_s = ignore_ttl_s
        self.force_polling = force_polling
        self._pending: dict[Path, _Pending] = {}
        self._reported: dict[Path, _Signature] = {}
        self._ignores: dict[tuple[str, str], float] = {}
        self._ignores_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 10.0) -> None:
        """Start watching; returns once the watch is in place (later writes will be seen)."""
        if self._thread is not None:
            raise RuntimeError("BucketWatcher already started")
        self.root.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="aib-bucket-watcher", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"watching {self.root} did not start within {timeout_s}s")
        if self._error is not None:
            raise RuntimeError(f"watching {self.root} failed to start") from self._error

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop watching and wait for the thread; pending (unsettled) files are dropped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._ready.clear()

    def __enter__(self) -> BucketWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ignore_once(self, bucket: str, key: str) -> None:
        """Swallow the next report of `bucket/key` (call before writing it; see module doc)."""
        with self._ignores_lock:
            self._ignores[(bucket, key)] = time.monotonic() + self.ignore_ttl_s

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            from watchfiles import watch
        except ImportError as e:  # an optional dependency: `pip install aibackend[local]`
            self._error = e
            self._ready.set()
            return
        tick_ms = max(20, min(200, int(self.stable_s * 1000 / 4)))
        try:
            for changes in watch(
                self.root,
                watch_filter=None,
                debounce=max(tick_ms * 4, 400),
                step=min(50, tick_ms),
                stop_event=self._stop,
                rust_timeout=tick_ms,
                yield_on_timeout=True,
                raise_interrupt=False,
                force_polling=self.force_polling,
            ):
                self._ready.set()  # the first tick: the watch is in place
                self._handle(changes)
                self._settle()
        except Exception as e:
            log.exception("bucket watcher on %s stopped", self.root)
            self._error = e
        finally:
            self._ready.set()

    def _handle(self, changes: Iterable[tuple[object, str]]) -> None:
        from watchfiles import Change

        added: set[Path] = set()
        modified: set[Path] = set()
        #: Folders where a temp file vanished in this batch: a rename into place, most likely.
        temp_vanished_in: set[Path] = set()
        for change, raw in changes:
            path = Path(raw)
            if change == Change.deleted:
                if _is_temp_name(path.name):
                    temp_vanished_in.add(path.parent)
                self._pending.pop(path, None)
                self._reported.pop(path, None)
            elif change == Change.added:
                added.add(path)
            else:
                modified.add(path)
        now = time.monotonic()
        for path in added | modified:
            if path.is_dir():
                if path in added:
                    self._scan(path, now)  # files made before the new folder was watched
                continue
            if self._object_of(path) is None:
                continue
            sig = _signature(path)
            if sig is None:
                continue
            # Appeared whole, never written under this name, as a temp file next to it vanished:
            # write-then-rename. Anything else waits until it has been quiet for `stable_s`.
            if path in added and path not in modified and path.parent in temp_vanished_in:
                self._pending.pop(path, None)
                self._report(path, sig)
            else:
                self._watch(path, sig, now)

    def _scan(self, folder: Path, now: float) -> None:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for fn in filenames:
                path = Path(dirpath) / fn
                sig = _signature(path)
                if sig is not None and self._object_of(path) is not None:
                    self._watch(path, sig, now)

    def _watch(self, path: Path, sig: _Signature, now: float) -> None:
        """Track a file until it has been quiet for `stable_s`; any change restarts the clock."""
        self._pending[path] = _Pending(sig, now)

    def _settle(self) -> None:
        now = time.monotonic()
        for path, pending in list(self._pending.items()):
            sig = _signature(path)
            if sig is None:
                del self._pending[path]
            elif sig != pending.signature:
                self._pending[path] = _Pending(sig, now)
            elif now - pending.since >= self.stable_s:
                del self._pending[path]
                self._report(path, sig)

    def _object_of(self, path: Path) -> tuple[str, str] | None:
        """(bucket, key) of a path under the root, or None for what this watcher ignores."""
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:
            return None
        if len(parts) < 2 or any(p.startswith(".") for p in parts):
            return None
        if _is_temp_name(parts[-1]):
            return None
        return parts[0], "/".join(parts[1:])

    def _report(self, path: Path, sig: _Signature) -> None:
        obj = self._object_of(path)
        if obj is None or self._reported.get(path) == sig:
            return
        self._reported[path] = sig
        with self._ignores_lock:
            now = time.monotonic()
            for k in [k for k, expiry in self._ignores.items() if expiry < now]:
                del self._ignores[k]
            if self._ignores.pop(obj, None) is not None:
                return
        try:
            self.on_object(*obj)
        except Exception:
            log.exception("on_object(%r, %r) failed", *obj)
