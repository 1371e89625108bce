"""The lexicon baseline: word weights, negation, contrast, ties."""

from __future__ import annotations

import numpy as np
import pytest

from aibackend.training.sentiment import (
    Lexicon,
    Sentences,
    baselines,
    check_disjoint,
)

LEX = Lexicon({"good": 1.0, "great": 2.0, "bad": -1.0, "broke": -1.0})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("good", 1.0),
        ("Great, but it broke.", 0.5 * 2.0 + 1.5 * -1.0),
        ("It broke, but it is great.", 0.5 * -1.0 + 1.5 * 2.0),
        ("not good", -1.0),
        ("Doesn't look bad at all", 1.0),
        ("Don\u2019t expect anything good", -1.0),  # curly apostrophe
        ("not for a moment good", 1.0),  # beyond the 3-word scope
        ("not good. Great!", -1.0 + 2.0),  # punctuation ends the scope
        ("nothing here", 0.0),
    ],
)
def test_lexicon_scores(text: str, expected: float) -> None:
    assert LEX.score(text) == pytest.approx(expected)


def test_the_committed_lexicon_reads_and_knows_common_opinion_words() -> None:
    lexicon = Lexicon.read()
    assert lexicon.score("excellent") > 0 > lexicon.score("terrible")
    assert lexicon.score("not worth it") < 0


def test_baselines_fall_back_to_the_training_majority_on_ties() -> None:
    # GIVEN training data that is mostly negative, and a holdout with one unscored sentence
    train = Sentences(texts=["a", "b", "c"], y=np.array([0, 0, 1]), weights=np.ones(3))
    holdout = Sentences(
        texts=["great", "it broke", "no opinion here"], y=np.array([1, 0, 1]), weights=np.ones(3)
    )
    # WHEN both baselines are scored
    base = baselines(train, holdout, LEX)
    # THEN the majority class says "negative" for all; the lexicon too, for the tie
    assert base["majority_class"]["accuracy"] == pytest.approx(1 / 3)
    assert base["lexicon"]["accuracy"] == pytest.approx(2 / 3)
    assert base["lexicon"]["rows"] == 3


def test_a_holdout_sentence_found_in_training_is_refused() -> None:
    with pytest.raises(Exception, match=r"1 holdout sentence\(s\) also appear"):
        check_disjoint(["It is GREAT!"], ["it is great", "something else"])
    check_disjoint(["It is great"], ["It is not great"])
