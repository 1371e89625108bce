"""The sentiment corpus and holdout as committed: sizes, labels, disjointness, provenance."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from aibackend.training.local import TRAINABLE
from aibackend.training.sentiment import (
    CORPUS_FILES,
    DATA_DIR,
    HOLDOUT_SOURCE,
    normalize,
    prepare,
    read_sentences,
)

LABELS = {"negative", "positive"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _generator() -> ModuleType:
    path = DATA_DIR / "corpus" / "generate.py"
    spec = importlib.util.spec_from_file_location("sentiment_corpus_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


CORPUS = [row for path in CORPUS_FILES for row in _rows(path)]
HOLDOUT = _rows(HOLDOUT_SOURCE)


def test_the_corpus_holds_at_least_2000_labeled_sentences_in_both_classes() -> None:
    # GIVEN the committed corpus (generated + hand-written)
    counts = Counter(r["label"] for r in CORPUS)
    # THEN it has 2,000+ sentences, every label known, the classes within 10% of each other
    assert len(CORPUS) >= 2000
    assert set(counts) == LABELS
    assert abs(counts["positive"] - counts["negative"]) <= 0.1 * len(CORPUS)
    assert all(r["text"].strip() for r in CORPUS)


def test_the_holdout_holds_at_least_200_hand_written_sentences_across_domains() -> None:
    counts = Counter(r["label"] for r in HOLDOUT)
    assert len(HOLDOUT) >= 200
    assert set(counts) == LABELS
    assert min(counts.values()) >= 0.4 * len(HOLDOUT)
    assert len({r["domain"] for r in HOLDOUT}) >= 10


def test_no_holdout_sentence_appears_in_the_training_corpus_even_normalized() -> None:
    # GIVEN every sentence lowercased and reduced to its words
    corpus = {normalize(r["text"]) for r in CORPUS}
    holdout = [normalize(r["text"]) for r in HOLDOUT]
    # THEN the two sets share none, and neither side repeats itself
    assert not corpus & set(holdout)
    assert len(set(holdout)) == len(holdout)
    assert len(corpus) == len(CORPUS)


def test_normalize_ignores_case_punctuation_and_spacing() -> None:
    assert normalize("Not  worth it!") == normalize("not worth it") == "not worth it"
    assert normalize("Don\u2019t buy") == normalize("don't buy") == "don t buy"


def test_the_committed_generated_csv_is_what_the_generator_writes(tmp_path: Path) -> None:
    # GIVEN the generator and its hand-written fragments, run with its defaults
    gen = _generator()
    out = tmp_path / "generated.csv"
    gen.write(gen.generate(gen.DEFAULT_ROWS, gen.DEFAULT_SEED), out)
    # THEN it reproduces the committed file byte for byte
    committed = DATA_DIR / "corpus" / "generated.csv"
    assert (
        hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(committed.read_bytes()).digest()
    )


def test_every_folder_of_data_documents_its_provenance_and_license() -> None:
    for folder in ("corpus", "holdout", "lexicon"):
        note = (DATA_DIR / folder / "PROVENANCE.md").read_text(encoding="utf-8")
        assert "Apache-2.0" in note, folder


def test_aib_train_uses_the_whole_corpus_by_default() -> None:
    assert TRAINABLE["sentiment"].default_rows == len(CORPUS)


def test_prepare_copies_the_corpus_and_holdout_into_the_channel(tmp_path: Path) -> None:
    # WHEN the channel is prepared with every row
    train = prepare(tmp_path, rows=len(CORPUS), seed=7)
    # THEN it holds the corpus, sources marked, and the holdout unchanged
    rows = _rows(train)
    assert [r["text"] for r in rows] == [r["text"] for r in CORPUS]
    assert Counter(r["source"] for r in rows) == {
        path.stem: len(_rows(path)) for path in CORPUS_FILES
    }
    assert (tmp_path / "holdout.csv").read_bytes() == HOLDOUT_SOURCE.read_bytes()


def test_prepare_samples_fewer_rows_reproducibly_and_refuses_more(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    sample = [r["text"] for r in _rows(prepare(a, rows=500, seed=3))]
    assert sample == [r["text"] for r in _rows(prepare(b, rows=500, seed=3))]
    assert sample != [r["text"] for r in _rows(prepare(c, rows=500, seed=4))]
    assert len(set(sample)) == 500
    with pytest.raises(Exception, match=f"has {len(CORPUS)} sentences"):
        prepare(c, rows=len(CORPUS) + 1, seed=3)


def test_hand_written_rows_carry_their_weight(tmp_path: Path) -> None:
    # GIVEN a channel file with a source column
    train = prepare(tmp_path, rows=len(CORPUS), seed=7)
    # WHEN it is read with hand-written rows weighing 3
    sentences = read_sentences([train], handwritten_weight=3.0)
    # THEN exactly the hand-written rows weigh 3 and labels map to 0 / 1
    sources = [r["source"] for r in _rows(train)]
    assert [w == 3.0 for w in sentences.weights] == [s == "handwritten" for s in sources]
    assert sorted(set(sentences.y.tolist())) == [0, 1]
