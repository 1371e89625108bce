"""Micro-batching: one worker thread runs the encoder on batches of up to `MAX_BATCH` texts.

A request is sorted by length (shorter padding, as sentence-transformers does) and cut into
pieces of at most `max_batch` texts. The worker packs pieces into batches, waiting up to
`max_wait_s` for pieces of other requests when a batch is not full: concurrent small requests
share one forward pass, which is what keeps a GPU busy. One worker also means the model never
runs twice at once, so each run gets every core (CPU) or the whole device (GPU).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from aibackend.embeddings.backends import Encoded

log = logging.getLogger("aib.embeddings")


@dataclass
class _Request:
    """One caller's texts and where their results go."""

    texts: Sequence[str]
    future: Future[Encoded]
    pending: int
    vectors: np.ndarray | None = None
    tokens: list[int] = field(default_factory=list)

    def fill(self, rows: list[int], encoded: Encoded) -> None:
        if self.vectors is None:
            self.vectors = np.empty((len(self.texts), encoded.vectors.shape[1]), np.float32)
            self.tokens = [0] * len(self.texts)
        self.vectors[rows] = encoded.vectors
        for row, count in zip(rows, encoded.tokens, strict=True):
            self.tokens[row] = count
        self.pending -= 1
        if self.pending == 0 and not self.future.done():
            self.future.set_result(Encoded(vectors=self.vectors, tokens=self.tokens))


@dataclass(frozen=True)
class _Piece:
    request: _Request
    #: Rows of the request's texts this piece carries.
    rows: list[int]


class Batcher:
    """Runs `encode` on batches packed from concurrent requests; `submit` returns a future."""

    def __init__(
        self,
        encode: Callable[[Sequence[str]], Encoded],
        *,
        max_batch: int,
        max_wait_s: float = 0.002,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[_Piece | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        #: A piece that did not fit the last batch: it opens the next one.
        self._carry: _Piece | None = None
        #: Batches run and texts encoded since start (for tests and /ping).
        self.batches = 0
        self.texts = 0

    def start(self) -> Batcher:
        self._thread = threading.Thread(
            target=self._run, name="aib-embeddings-batcher", daemon=True
        )
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the batch in hand; requests still queued fail (nothing will run them)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        leftover = [self._carry] if self._carry is not None else []
        self._carry = None
        while True:
            try:
                piece = self._queue.get_nowait()
            except queue.Empty:
                break
            if piece is not None:
                leftover.append(piece)
        for p in leftover:
            if not p.request.future.done():
                p.request.future.set_exception(RuntimeError("the embeddings server is stopping"))

    def submit(self, texts: Sequence[str]) -> Future[Encoded]:
        """Embed `texts` (any number); the future holds them in input order."""
        future: Future[Encoded] = Future()
        if not texts:
            future.set_exception(ValueError("nothing to embed: texts is empty"))
            return future
        if not self.alive:
            future.set_exception(RuntimeError("the batcher is not running"))
            return future
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        pieces = [order[i : i + self.max_batch] for i in range(0, len(order), self.max_batch)]
        request = _Request(texts=texts, future=future, pending=len(pieces))
        for rows in pieces:
            self._queue.put(_Piece(request, rows))
        return future

    def _next(self, timeout: float | None) -> _Piece | None:
        """The held-over piece, else the queue's next; None: stop requested. Raises
        queue.Empty when `timeout` passes first."""
        if self._carry is not None:
            piece, self._carry = self._carry, None
            return piece
        if timeout is None:
            return self._queue.get()
        return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()

    def _collect(self, first: _Piece) -> tuple[list[_Piece], bool]:
        """`first` plus queued pieces that fit; (pieces, stop requested)."""
        batch, size = [first], len(first.rows)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                piece = self._next(deadline - time.monotonic())
            except queue.Empty:
                break
            if piece is None:
                return batch, True
            if size + len(piece.rows) > self.max_batch:
                self._carry = piece  # first of the next batch: requests keep their turn
                break
            batch.append(piece)
            size += len(piece.rows)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._next(None)
            if first is None:
                return
            batch, stop = self._collect(first)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Piece]) -> None:
        texts = [p.request.texts[row] for p in batch for row in p.rows]
        try:
            encoded = self._encode(texts)
        except Exception as e:  # every waiting request hears about it; the worker lives on
            log.exception("encoding a batch of %d texts failed", len(texts))
            for p in batch:
                if not p.request.future.done():
                    p.request.future.set_exception(e)
            return
        self.batches += 1
        self.texts += len(texts)
        start = 0
        for p in batch:
            end = start + len(p.rows)
            p.request.fill(
                p.rows,
                Encoded(vectors=encoded.vectors[start:end], tokens=encoded.tokens[start:end]),
            )
            start = end
