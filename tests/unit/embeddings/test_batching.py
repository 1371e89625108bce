"""The batcher: batches of at most `max_batch`, concurrent requests packed together, results
back in input order, failures to every waiting caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from aibackend.embeddings.backends import Encoded
from aibackend.embeddings.batching import Batcher


class Recorder:
    """An encoder whose vector for a text is (len(text), first char code); remembers batches."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = gate
        #: Set once the first batch is in the encoder (and held there until `gate` is set).
        self.entered = threading.Event()

    def __call__(self, texts: Sequence[str]) -> Encoded:
        self.batches.append(list(texts))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        vectors = np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)
        return Encoded(vectors=vectors, tokens=[len(t) for t in texts])


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def batcher(recorder: Recorder) -> Iterator[Batcher]:
    b = Batcher(recorder, max_batch=4, max_wait_s=0.05).start()
    yield b
    b.stop()


def test_a_large_request_is_cut_into_full_batches_and_reassembled_in_order(
    batcher: Batcher, recorder: Recorder
) -> None:
    texts = [chr(ord("a") + i) * (i % 5 + 1) for i in range(10)]
    out = batcher.submit(texts).result(5)
    assert [len(b) for b in recorder.batches] == [4, 4, 2]
    assert out.vectors[:, 0].tolist() == [len(t) for t in texts]
    assert out.tokens == [len(t) for t in texts]
    # longest first inside the request: a batch pads to its longest text, so similar lengths
    assert [len(t) for t in recorder.batches[0]] == sorted(
        (len(t) for t in recorder.batches[0]), reverse=True
    )


def test_concurrent_small_requests_share_a_batch() -> None:
    # GIVEN a worker held up by its first batch while three one-text requests queue up
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = Batcher(recorder, max_batch=4, max_wait_s=0.05).start()
    try:
        first = batcher.submit(["x"])
        assert recorder.entered.wait(5)
        waiting = [batcher.submit([c]) for c in "abc"]
        gate.set()
        # THEN the three run as one batch, each getting its own answer
        assert first.result(5).vectors[0, 1] == ord("x")
        assert [f.result(5).vectors[0, 1] for f in waiting] == [ord(c) for c in "abc"]
        assert recorder.batches[1:] == [["a", "b", "c"]]
        assert (batcher.batches, batcher.texts) == (2, 4)
    finally:
        batcher.stop()


def test_a_piece_that_does_not_fit_opens_the_next_batch() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = Batcher(recorder, max_batch=4, max_wait_s=0.05).start()
    try:
        hold = batcher.submit(["h"])
        assert recorder.entered.wait(5)
        a = batcher.submit(["aa", "a"])
        b = batcher.submit(["bbb", "bb", "b"])  # 2 + 3 > 4: waits for the next batch
        c = batcher.submit(["c"])
        gate.set()
        for f in (hold, a, b, c):
            f.result(5)
        assert recorder.batches[1:] == [["aa", "a"], ["bbb", "bb", "b", "c"]]
    finally:
        batcher.stop()


def test_an_encoder_failure_reaches_every_caller_and_the_worker_lives_on() -> None:
    calls = {"n": 0}

    def flaky(texts: Sequence[str]) -> Encoded:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory")
        return Recorder()(texts)

    batcher = Batcher(flaky, max_batch=4, max_wait_s=0).start()
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            batcher.submit(["a"]).result(5)
        assert batcher.submit(["b"]).result(5).tokens == [1]
    finally:
        batcher.stop()


def test_nothing_to_embed_and_a_stopped_batcher_fail_the_future(recorder: Recorder) -> None:
    batcher = Batcher(recorder, max_batch=4)
    with pytest.raises(RuntimeError, match="not running"):
        batcher.submit(["a"]).result(1)
    batcher.start()
    with pytest.raises(ValueError, match="empty"):
        batcher.submit([]).result(1)
    batcher.stop()
    assert not batcher.alive
