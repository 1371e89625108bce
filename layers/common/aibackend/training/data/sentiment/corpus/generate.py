"""Write `generated.csv`: labeled product-review sentences built from hand-written fragments.

    .venv/bin/python layers/common/aibackend/training/data/sentiment/corpus/generate.py

The fragments are in `fragments.toml`, all written by hand for this project (PROVENANCE.md):
per domain, products with the parts a review names and what each does well or badly; and
opinion words, intensifiers, negated complaints, verdicts. Templates below combine them into
plain statements, negations ("is not ... at all", "never", "no longer"), contrasts (the clause
after "but" / "however" carries the verdict, as it does in most reviews), verdicts,
recommendations, feelings and comparisons. Each template fixes the label of what it builds, so
labels are right by construction; what the corpus lacks is the variety of real writing, which
the hand-written sentences beside it (`handwritten.csv`) add and the separate hand-written
holdout measures.

The output is deterministic for given `--rows` and `--seed`; the committed `generated.csv` is
what this script writes with the defaults.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FRAGMENTS = HERE / "fragments.toml"
OUTPUT = HERE / "generated.csv"
DEFAULT_ROWS = 2600
DEFAULT_SEED = 20261127
POSITIVE, NEGATIVE = "positive", "negative"


@dataclass(frozen=True)
class Product:
    """A product, the parts a review names, and what it does well (`good`) or badly (`bad`)."""

    name: str
    aspects: tuple[str, ...]
    good: tuple[str, ...]
    bad: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    name: str
    products: tuple[Product, ...]
    #: Qualities every product of the domain has ("price", "service").
    aspects: tuple[str, ...]


@dataclass(frozen=True)
class Words:
    """`[words]` of fragments.toml: opinion words every domain uses."""

    pos_adj: tuple[str, ...]
    neg_adj: tuple[str, ...]
    #: Aspects about money take their own words ("the price is fair").
    price_aspects: frozenset[str]
    price_pos: tuple[str, ...]
    price_neg: tuple[str, ...]
    #: Complaints that read naturally negated, as praise: "the battery is never a problem".
    negated_complaints: tuple[str, ...]
    intensifiers: tuple[str, ...]
    pos_feel: tuple[str, ...]
    neg_feel: tuple[str, ...]
    openers: tuple[str, ...]
    #: Sentence starts an opener would make clumsy ("So far, after a month, ...").
    no_opener: tuple[str, ...]
    durations: tuple[str, ...]
    pos_verdicts: tuple[str, ...]
    neg_verdicts: tuple[str, ...]
    people: tuple[str, ...]
    terminators: tuple[str, ...]
    #: Plural aspects that do not end in a single "s" ("feet").
    plurals: frozenset[str]
    #: What any product does well or badly, in the present and in the past tense.
    good_now: tuple[str, ...]
    bad_now: tuple[str, ...]
    good_past: tuple[str, ...]
    bad_past: tuple[str, ...]
    #: "I {love} my new kettle", "I {can't stand} the lid".
    love_verbs: tuple[str, ...]
    hate_verbs: tuple[str, ...]


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(f"{FRAGMENTS.name}: {where} must be a list of strings")
    return tuple(raw)


def load_fragments(path: Path = FRAGMENTS) -> tuple[Words, tuple[Domain, ...]]:
    """The words and domains of a fragments file."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    raw_words = data["words"]
    values: dict[str, Any] = {}
    for f in fields(Words):
        items = _strings(raw_words.get(f.name), f"words.{f.name}")
        values[f.name] = frozenset(items) if f.name in ("price_aspects", "plurals") else items
    domains = tuple(
        Domain(
            name=d["name"],
            aspects=_strings(d["aspects"], f"{d['name']}.aspects"),
            products=tuple(
                Product(
                    name=p["name"],
                    aspects=_strings(p["aspects"], f"{p['name']}.aspects"),
                    good=_strings(p["good"], f"{p['name']}.good"),
                    bad=_strings(p["bad"], f"{p['name']}.bad"),
                )
                for p in d["products"]
            ),
        )
        for d in data["domains"]
    )
    return Words(**values), domains


W, DOMAINS = load_fragments()


@dataclass(frozen=True)
class Pick:
    """The domain and product one sentence is about."""

    domain: Domain
    product: Product

    @property
    def aspects(self) -> tuple[str, ...]:
        return self.product.aspects + self.domain.aspects


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _be(noun: str) -> str:
    """ "is" or "are" for an aspect ("the straps are", "the brightness is")."""
    plural = noun in W.plurals or (noun.endswith("s") and not noun.endswith("ss"))
    return "are" if plural else "is"


def _intense(rng: random.Random, adj: str) -> str:
    """Maybe an intensifier before a one-word adjective ("really good", never "very a joke")."""
    word = rng.choice(W.intensifiers) if " " not in adj else ""
    return f"{word} {adj}" if word else adj


def _subject(rng: random.Random, p: Pick) -> str:
    name = p.product.name
    return rng.choice((f"the {name}", f"this {name}", f"my new {name}", f"our {name}", "it"))


def _opinion(rng: random.Random, aspect: str, positive: bool) -> str:
    if aspect in W.price_aspects:
        return rng.choice(W.price_pos if positive else W.price_neg)
    return rng.choice(W.pos_adj if positive else W.neg_adj)


def _aspect_clause(rng: random.Random, p: Pick, positive: bool, aspect: str = "") -> str:
    aspect = aspect or rng.choice(p.aspects)
    return f"the {aspect} {_be(aspect)} {_intense(rng, _opinion(rng, aspect, positive))}"


def _action_clause(rng: random.Random, p: Pick, positive: bool, subject: str = "") -> str:
    does = rng.choice(p.product.good if positive else p.product.bad)
    return f"{subject or _subject(rng, p)} {does}"


def _two_clauses(rng: random.Random, p: Pick, positive: bool) -> tuple[str, str]:
    """(first, last): opposite opinions, the last `positive`, about different things."""
    a, b = rng.sample(p.aspects, 2)
    kinds = rng.choice(("aa", "an", "na", "nn"))
    first = (
        _aspect_clause(rng, p, not positive, a)
        if kinds[0] == "a"
        else _action_clause(rng, p, not positive)
    )
    last = (
        _aspect_clause(rng, p, positive, b)
        if kinds[1] == "a"
        else _action_clause(rng, p, positive, "it" if kinds[0] == "n" else "")
    )
    return first, last


def _clause(rng: random.Random, p: Pick, positive: bool) -> str:
    if rng.random() < 0.5:
        return _aspect_clause(rng, p, positive)
    return _action_clause(rng, p, positive)


# Each template builds a sentence whose label is its `positive` argument.


def t_action(rng: random.Random, p: Pick, positive: bool) -> str:
    return _action_clause(rng, p, positive)


def t_aspect(rng: random.Random, p: Pick, positive: bool) -> str:
    return _aspect_clause(rng, p, positive)


def t_negated(rng: random.Random, p: Pick, positive: bool) -> str:
    aspect = rng.choice(p.aspects)
    be = _be(aspect)
    if positive:
        complaint = rng.choice(W.negated_complaints)
        return rng.choice(
            (
                f"the {aspect} {be} not {complaint} at all",
                f"the {aspect} {be} never {complaint}",
                f"the {aspect} {be}n't {complaint} in the least",
            )
        )
    adj = _opinion(rng, aspect, True)
    return rng.choice(
        (
            f"the {aspect} {be} not {adj}",
            f"the {aspect} {be}n't {_intense(rng, adj)}",
            f"I can't say the {aspect} {be} {adj}",
            f"the {aspect} {be} far from {adj}",
            f"nobody would call the {aspect} {adj}",
        )
    )


def t_over_time(rng: random.Random, p: Pick, positive: bool) -> str:
    subject, after = _subject(rng, p), rng.choice(W.durations)
    good, bad = rng.choice(p.product.good), rng.choice(p.product.bad)
    if positive:
        return rng.choice(
            (
                f"{subject} never {bad}",
                f"after {after}, {subject} still {good}",
                f"even after {after} {subject} {good}",
            )
        )
    return rng.choice(
        (
            f"after {after}, {subject} no longer {good}",
            f"within {after} {subject} {bad}",
            f"at first {subject} {good}; now it {bad}",
        )
    )


def t_contrast(rng: random.Random, p: Pick, positive: bool) -> str:
    first, last = _two_clauses(rng, p, positive)
    return rng.choice(
        (
            f"{first}, but {last}",
            f"although {first}, {last}",
            f"{first}; however, {last}",
            f"{first}, yet {last}",
        )
    )


def t_verdict(rng: random.Random, p: Pick, positive: bool) -> str:
    verdict = rng.choice(W.pos_verdicts if positive else W.neg_verdicts)
    roll = rng.random()
    if roll < 0.4:
        return verdict
    if roll < 0.6:
        return f"this {p.product.name}? {verdict}"
    return f"{_clause(rng, p, positive)}: {verdict}"


def t_recommend(rng: random.Random, p: Pick, positive: bool) -> str:
    name, who = p.product.name, rng.choice(W.people)
    if positive:
        return rng.choice(
            (
                f"I would recommend this {name} to {who}",
                f"I highly recommend this {name}",
                f"if you need {_a(name)}, get this one",
            )
        )
    return rng.choice(
        (
            f"I would not recommend this {name} to {who}",
            f"I can't recommend this {name}",
            f"do not buy this {name}",
            f"if you need {_a(name)}, look elsewhere",
        )
    )


def t_feeling(rng: random.Random, p: Pick, positive: bool) -> str:
    feel = rng.choice(W.pos_feel if positive else W.neg_feel)
    return rng.choice(
        (
            f"I am {_intense(rng, feel)} with this {p.product.name}",
            f"we are {_intense(rng, feel)} with the {rng.choice(p.aspects)}",
            f"{_intense(rng, feel)} with my purchase",
        )
    )


def t_compare(rng: random.Random, p: Pick, positive: bool) -> str:
    name = p.product.name
    if positive:
        return rng.choice(
            (
                f"much better than my old {name}",
                f"the best {name} I have tried",
                f"this {name} beats rivals that cost twice as much",
            )
        )
    return rng.choice(
        (
            f"worse than the cheap {name} it replaced",
            f"the worst {name} I have ever bought",
            f"my old {name} was better in every way",
        )
    )


def t_pair(rng: random.Random, p: Pick, positive: bool) -> str:
    a, b = rng.sample(p.aspects, 2)
    return rng.choice(
        (
            f"the {a} {_be(a)} {_opinion(rng, a, positive)} and the {b} {_be(b)} "
            f"{_intense(rng, _opinion(rng, b, positive))}",
            f"{_action_clause(rng, p, positive)}, and {_aspect_clause(rng, p, positive, a)}",
            f"{_action_clause(rng, p, positive)}; {_aspect_clause(rng, p, positive, b)} too",
        )
    )


def t_generic(rng: random.Random, p: Pick, positive: bool) -> str:
    subject, after = _subject(rng, p), rng.choice(W.durations)
    now = rng.choice(W.good_now if positive else W.bad_now)
    past = rng.choice(W.good_past if positive else W.bad_past)
    return rng.choice(
        (
            f"{subject} {now}",
            f"after {after}, {subject} {past}",
            f"{subject} {past} for {after} and counting"
            if positive
            else f"{subject} {past} within {after}",
        )
    )


def t_attitude(rng: random.Random, p: Pick, positive: bool) -> str:
    verb = rng.choice(W.love_verbs if positive else W.hate_verbs)
    thing = rng.choice((f"my new {p.product.name}", f"this {p.product.name}", "it"))
    if rng.random() < 0.4:
        thing = f"the {rng.choice(p.aspects)}"
    return f"I {_intense_verb(rng, verb)} {thing}"


def _intense_verb(rng: random.Random, verb: str) -> str:
    """ "absolutely love", "really hate"; phrases with their own adverb stay as they are."""
    if " " in verb or rng.random() < 0.5:
        return verb
    return f"{rng.choice(('really', 'absolutely', 'honestly', 'truly'))} {verb}"


Template = Callable[[random.Random, Pick, bool], str]
#: Each template and its weight in the sample.
TEMPLATES: tuple[tuple[Template, int], ...] = (
    (t_action, 5),
    (t_aspect, 3),
    (t_negated, 3),
    (t_over_time, 3),
    (t_contrast, 4),
    (t_verdict, 2),
    (t_recommend, 2),
    (t_feeling, 2),
    (t_compare, 1),
    (t_pair, 3),
    (t_generic, 3),
    (t_attitude, 2),
)


def _finish(rng: random.Random, text: str) -> str:
    if not text.lower().startswith(W.no_opener):
        text = rng.choice(W.openers) + text
    return text[0].upper() + text[1:] + rng.choice(W.terminators)


def normalized(text: str) -> str:
    """Lowercase words only: the form duplicates are detected in."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def generate(rows: int, seed: int) -> list[tuple[str, str, str]]:
    """`rows` distinct (text, label, domain) triples, alternating labels, seeded."""
    rng = random.Random(seed)
    templates = [t for t, _ in TEMPLATES]
    weights = [w for _, w in TEMPLATES]
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    attempts = 0
    while len(out) < rows:
        attempts += 1
        if attempts > rows * 50:
            raise RuntimeError(f"only {len(out)} distinct sentences after {attempts} tries")
        positive = len(out) % 2 == 0
        domain = rng.choice(DOMAINS)
        pick = Pick(domain, rng.choice(domain.products))
        (template,) = rng.choices(templates, weights)
        text = _finish(rng, template(rng, pick, positive))
        key = normalized(text)
        if key in seen:
            continue
        seen.add(key)
        out.append((text, POSITIVE if positive else NEGATIVE, domain.name))
    return out


def write(rows: list[tuple[str, str, str]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label", "domain"])
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", type=Path, default=OUTPUT)
    args = ap.parse_args()
    write(generate(args.rows, args.seed), args.out)
    print(f"wrote {args.rows} sentences to {args.out}")


if __name__ == "__main__":
    main()
