"""EventBridge content filtering, operator by operator, plus the patterns EventBridge refuses.

Behaviour follows the EventBridge user guide ("Content filtering in event patterns",
"Comparison operators") and aws/event-ruler, the engine behind it. Each case reads as
GIVEN a pattern, WHEN an event arrives, THEN it matches or not.
"""

from __future__ import annotations

from typing import Any

import pytest

from aibackend.events.patterns import InvalidPatternError, compile_pattern


def event(detail: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A full EventBridge envelope around `detail`; keyword arguments override top fields."""
    base: dict[str, Any] = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Transaction Created",
        "source": "aib.payments",
        "account": "000000000000",
        "time": "2024-05-01T10:00:00Z",
        "region": "local",
        "resources": ["arn:aws:s3:::uploads"],
        "detail": {} if detail is None else detail,
    }
    base.update({k.replace("_", "-"): v for k, v in top.items()})
    return base


CASES = [
    # -- exact values ---------------------------------------------------------------------
    ("exact string", {"source": ["aib.payments"]}, event(), True),
    ("exact string, other value", {"source": ["aib.orders"]}, event(), False),
    ("exact match is case sensitive", {"source": ["AIB.PAYMENTS"]}, event(), False),
    ("values in an array are OR'ed", {"source": ["x", "aib.payments"]}, event(), True),
    (
        "fields are AND'ed",
        {"source": ["aib.payments"], "detail-type": ["Refund"]},
        event(),
        False,
    ),
    ("missing field never matches a value", {"detail": {"state": ["x"]}}, event({}), False),
    ("number", {"detail": {"n": [5]}}, event({"n": 5}), True),
    # event-ruler compares numbers by value: 5 and 5.0 are the same number.
    ("number compares by value", {"detail": {"n": [5]}}, event({"n": 5.0}), True),
    ("number does not match its string", {"detail": {"n": [5]}}, event({"n": "5"}), False),
    ("string does not match a number", {"detail": {"n": ["5"]}}, event({"n": 5}), False),
    ("true", {"detail": {"ok": [True]}}, event({"ok": True}), True),
    ("true is not 1", {"detail": {"ok": [True]}}, event({"ok": 1}), False),
    ("1 is not true", {"detail": {"n": [1]}}, event({"n": True}), False),
    ("false", {"detail": {"ok": [False]}}, event({"ok": False}), True),
    ("null matches null", {"detail": {"x": [None]}}, event({"x": None}), True),
    ("null does not match a missing field", {"detail": {"x": [None]}}, event({}), False),
    ("empty string", {"detail": {"x": [""]}}, event({"x": ""}), True),
    ("empty string is not null", {"detail": {"x": [""]}}, event({"x": None}), False),
    # -- arrays in the event: any element may match --------------------------------------
    ("event array, one element matches", {"resources": ["arn:aws:s3:::uploads"]}, event(), True),
    ("event array, none matches", {"detail": {"tags": ["c"]}}, event({"tags": ["a", "b"]}), False),
    ("empty event array matches no value", {"detail": {"tags": ["a"]}}, event({"tags": []}), False),
    (
        "nested event arrays are flattened",
        {"detail": {"t": [3]}},
        event({"t": [[1], [2, 3]]}),
        True,
    ),
    (
        "objects in an array: fields match within one element",
        {"detail": {"items": {"sku": ["A"], "qty": [2]}}},
        event({"items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}),
        False,
    ),
    (
        "objects in an array: one element matches every field",
        {"detail": {"items": {"sku": ["B"], "qty": [2]}}},
        event({"items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}),
        True,
    ),
    # -- nested objects --------------------------------------------------------------------
    (
        "nested object",
        {"detail": {"card": {"country": ["FR"]}}},
        event({"card": {"country": "FR"}}),
        True,
    ),
    (
        "an object is not a value",
        {"detail": {"card": ["FR"]}},
        event({"card": {"country": "FR"}}),
        False,
    ),
    (
        "nested pattern on a scalar",
        {"detail": {"card": {"country": ["FR"]}}},
        event({"card": "FR"}),
        False,
    ),
    # -- prefix / suffix / equals-ignore-case -------------------------------------------------
    ("prefix", {"time": [{"prefix": "2024-05"}]}, event(), True),
    ("prefix, no match", {"time": [{"prefix": "2023"}]}, event(), False),
    ("prefix is case sensitive", {"source": [{"prefix": "AIB."}]}, event(), False),
    ("prefix only works on strings", {"detail": {"n": [{"prefix": "1"}]}}, event({"n": 12}), False),
    (
        "prefix ignoring case",
        {"source": [{"prefix": {"equals-ignore-case": "AIB.PAY"}}]},
        event(),
        True,
    ),
    ("suffix", {"detail": {"f": [{"suffix": ".png"}]}}, event({"f": "a.png"}), True),
    ("suffix, no match", {"detail": {"f": [{"suffix": ".png"}]}}, event({"f": "a.PNG"}), False),
    (
        "suffix ignoring case",
        {"detail": {"f": [{"suffix": {"equals-ignore-case": ".png"}}]}},
        event({"f": "a.PNG"}),
        True,
    ),
    ("equals-ignore-case", {"source": [{"equals-ignore-case": "AIB.Payments"}]}, event(), True),
    (
        "equals-ignore-case is still equality",
        {"source": [{"equals-ignore-case": "aib.pay"}]},
        event(),
        False,
    ),
    # -- wildcard ----------------------------------------------------------------------------
    (
        "wildcard",
        {"detail": {"k": [{"wildcard": "raw/*.csv"}]}},
        event({"k": "raw/2024/a.csv"}),
        True,
    ),
    (
        "wildcard, no match",
        {"detail": {"k": [{"wildcard": "raw/*.csv"}]}},
        event({"k": "raw/a.json"}),
        False,
    ),
    (
        "wildcard matches the empty run",
        {"detail": {"k": [{"wildcard": "a*b"}]}},
        event({"k": "ab"}),
        True,
    ),
    (
        "wildcard without star is equality",
        {"detail": {"k": [{"wildcard": "ab"}]}},
        event({"k": "abc"}),
        False,
    ),
    (
        "wildcard regex characters are literal",
        {"detail": {"k": [{"wildcard": "a.c"}]}},
        event({"k": "abc"}),
        False,
    ),
    # A backslash escapes a literal star (the catalog builds such patterns from S3 prefixes).
    (
        "escaped star is literal",
        {"detail": {"k": [{"wildcard": "a\\**"}]}},
        event({"k": "a*b"}),
        True,
    ),
    (
        "escaped star is not a wildcard",
        {"detail": {"k": [{"wildcard": "a\\*"}]}},
        event({"k": "ab"}),
        False,
    ),
    ("escaped backslash", {"detail": {"k": [{"wildcard": "a\\\\*"}]}}, event({"k": "a\\b"}), True),
    # -- numeric -----------------------------------------------------------------------------
    ("numeric range", {"detail": {"n": [{"numeric": [">", 0, "<=", 5]}]}}, event({"n": 5}), True),
    (
        "numeric range, open bottom",
        {"detail": {"n": [{"numeric": [">", 0, "<=", 5]}]}},
        event({"n": 0}),
        False,
    ),
    (
        "numeric range, above",
        {"detail": {"n": [{"numeric": [">", 0, "<=", 5]}]}},
        event({"n": 5.01}),
        False,
    ),
    ("numeric >=", {"detail": {"n": [{"numeric": [">=", 10]}]}}, event({"n": 10}), True),
    ("numeric <", {"detail": {"n": [{"numeric": ["<", 10]}]}}, event({"n": -3.5}), True),
    ("numeric =", {"detail": {"n": [{"numeric": ["=", 301.8]}]}}, event({"n": 301.8}), True),
    (
        "numeric = with exponent",
        {"detail": {"n": [{"numeric": ["=", 3.018e2]}]}},
        event({"n": 301.8}),
        True,
    ),
    # The guide: numeric matching only works on values that are JSON numbers.
    (
        "numeric ignores numeric strings",
        {"detail": {"n": [{"numeric": [">", 0]}]}},
        event({"n": "5"}),
        False,
    ),
    (
        "numeric ignores booleans",
        {"detail": {"n": [{"numeric": [">", 0]}]}},
        event({"n": True}),
        False,
    ),
    (
        "numeric on an array",
        {"detail": {"n": [{"numeric": [">", 10]}]}},
        event({"n": [1, 20]}),
        True,
    ),
    # -- exists ------------------------------------------------------------------------------
    ("exists true", {"detail": {"x": [{"exists": True}]}}, event({"x": "v"}), True),
    ("exists true on null", {"detail": {"x": [{"exists": True}]}}, event({"x": None}), True),
    ("exists true, missing", {"detail": {"x": [{"exists": True}]}}, event({}), False),
    ("exists false, missing", {"detail": {"x": [{"exists": False}]}}, event({}), True),
    ("exists false, present", {"detail": {"x": [{"exists": False}]}}, event({"x": 0}), False),
    # event-ruler: exists only works on leaf nodes, so an object is not "there" for it.
    (
        "exists true on an object",
        {"detail": {"x": [{"exists": True}]}},
        event({"x": {"y": 1}}),
        False,
    ),
    (
        "exists false on an object",
        {"detail": {"x": [{"exists": False}]}},
        event({"x": {"y": 1}}),
        True,
    ),
    (
        "exists false, parent missing",
        {"detail": {"x": {"y": [{"exists": False}]}}},
        event({}),
        True,
    ),
    (
        "exists false on an empty array",
        {"detail": {"x": [{"exists": False}]}},
        event({"x": []}),
        True,
    ),
    # -- anything-but ------------------------------------------------------------------------
    (
        "anything-but string",
        {"detail": {"s": [{"anything-but": "init"}]}},
        event({"s": "run"}),
        True,
    ),
    (
        "anything-but string, excluded",
        {"detail": {"s": [{"anything-but": "init"}]}},
        event({"s": "init"}),
        False,
    ),
    (
        "anything-but list",
        {"detail": {"s": [{"anything-but": ["a", "b"]}]}},
        event({"s": "b"}),
        False,
    ),
    (
        "anything-but list, other",
        {"detail": {"s": [{"anything-but": ["a", "b"]}]}},
        event({"s": "c"}),
        True,
    ),
    ("anything-but number", {"detail": {"n": [{"anything-but": 100}]}}, event({"n": 100.0}), False),
    (
        "anything-but numbers",
        {"detail": {"n": [{"anything-but": [100, 200]}]}},
        event({"n": 150}),
        True,
    ),
    # anything-but needs the field: a missing field has no value that differs.
    ("anything-but, missing field", {"detail": {"s": [{"anything-but": "a"}]}}, event({}), False),
    # On an event array, anything-but matches when ANY element is not excluded.
    (
        "anything-but on an array with one other element",
        {"detail": {"s": [{"anything-but": "a"}]}},
        event({"s": ["a", "b"]}),
        True,
    ),
    (
        "anything-but on an array of excluded",
        {"detail": {"s": [{"anything-but": "a"}]}},
        event({"s": ["a", "a"]}),
        False,
    ),
    (
        "anything-but prefix",
        {"detail": {"r": [{"anything-but": {"prefix": "us-"}}]}},
        event({"r": "eu-west-1"}),
        True,
    ),
    (
        "anything-but prefix, excluded",
        {"detail": {"r": [{"anything-but": {"prefix": "us-"}}]}},
        event({"r": "us-east-1"}),
        False,
    ),
    (
        "anything-but suffix",
        {"detail": {"f": [{"anything-but": {"suffix": ".png"}}]}},
        event({"f": "a.png"}),
        False,
    ),
    (
        "anything-but wildcard",
        {"detail": {"p": [{"anything-but": {"wildcard": "*/lib/*"}}]}},
        event({"p": "/a/lib/b"}),
        False,
    ),
    (
        "anything-but wildcard, other",
        {"detail": {"p": [{"anything-but": {"wildcard": "*/lib/*"}}]}},
        event({"p": "/a/bin/b"}),
        True,
    ),
    (
        "anything-but equals-ignore-case",
        {"detail": {"s": [{"anything-but": {"equals-ignore-case": ["INIT", "stop"]}}]}},
        event({"s": "Init"}),
        False,
    ),
    # -- cidr --------------------------------------------------------------------------------
    ("cidr", {"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}}, event({"ip": "10.0.0.33"}), True),
    (
        "cidr, outside",
        {"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}},
        event({"ip": "10.0.1.33"}),
        False,
    ),
    (
        "cidr, not an address",
        {"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}},
        event({"ip": "nope"}),
        False,
    ),
    (
        "cidr IPv6",
        {"detail": {"ip": [{"cidr": "2001:db8::/32"}]}},
        event({"ip": "2001:db8::1"}),
        True,
    ),
    # -- several matchers in one array are OR'ed -----------------------------------------------
    (
        "mixed matchers OR'ed",
        {"detail": {"n": [{"numeric": [">", 100]}, "small", {"exists": False}]}},
        event({"n": "small"}),
        True,
    ),
    ("exists false OR value, missing", {"detail": {"n": [{"exists": False}, 1]}}, event({}), True),
    # -- $or -------------------------------------------------------------------------------------
    (
        "$or, second branch",
        {"source": ["aib.payments"], "$or": [{"detail-type": ["Refund"]}, {"detail": {"n": [1]}}]},
        event({"n": 1}),
        True,
    ),
    (
        "$or, no branch",
        {"$or": [{"detail-type": ["Refund"]}, {"detail": {"n": [1]}}]},
        event({"n": 2}),
        False,
    ),
    (
        "$or nested in detail",
        {"detail": {"$or": [{"a": [1]}, {"b": [{"numeric": [">", 5]}]}]}},
        event({"b": 6}),
        True,
    ),
    (
        "$or with an AND inside",
        {"$or": [{"detail": {"a": [1], "b": [2]}}, {"source": ["nope"]}]},
        event({"a": 1, "b": 3}),
        False,
    ),
]


@pytest.mark.parametrize(
    ("pattern", "evt", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_pattern_matches_like_eventbridge(
    pattern: dict[str, Any], evt: dict[str, Any], expected: bool
) -> None:
    # GIVEN a compiled pattern
    compiled = compile_pattern(pattern)
    # WHEN an event is tested THEN the outcome is EventBridge's
    assert compiled.matches(evt) is expected


def test_pattern_can_be_given_as_json_text() -> None:
    assert compile_pattern('{"source": ["aib.payments"]}').matches(event())


INVALID = [
    ("not an object", ["aib"], "(pattern)", "JSON object"),
    ("not JSON", "{source", "(pattern)", "not valid JSON"),
    ("empty pattern", {}, "(pattern)", "empty object"),
    ("scalar instead of array", {"source": "aib.payments"}, "source", '["aib.payments"]'),
    ("empty array", {"detail": {"state": []}}, "detail.state", "empty arrays"),
    ("nested array", {"source": [["a"]]}, "source[0]", "cannot nest"),
    ("unknown operator", {"source": [{"contains": "a"}]}, "source[0].contains", "unknown operator"),
    (
        "two operators in one object",
        {"source": [{"prefix": "a", "suffix": "b"}]},
        "source[0]",
        "exactly one",
    ),
    ("prefix of a number", {"source": [{"prefix": 1}]}, "source[0].prefix", "takes a string"),
    (
        "prefix with an unknown option",
        {"source": [{"prefix": {"ignore-case": "a"}}]},
        "source[0].prefix",
        "equals-ignore-case",
    ),
    ("consecutive wildcards", {"k": [{"wildcard": "a**b"}]}, "k[0].wildcard", "consecutive"),
    ("bad wildcard escape", {"k": [{"wildcard": "a\\b"}]}, "k[0].wildcard", "backslash"),
    ("exists not a boolean", {"k": [{"exists": "yes"}]}, "k[0].exists", "true or false"),
    ("numeric odd length", {"n": [{"numeric": [">", 0, "<"]}]}, "n[0].numeric", "bounds"),
    (
        "numeric unknown operator",
        {"n": [{"numeric": ["!=", 0]}]},
        "n[0].numeric[0]",
        "unknown numeric",
    ),
    (
        "numeric string bound",
        {"n": [{"numeric": [">", "0"]}]},
        "n[0].numeric[1]",
        "expected a number",
    ),
    (
        "numeric two lower bounds",
        {"n": [{"numeric": [">", 0, ">=", 1]}]},
        "n[0].numeric[2]",
        "one lower",
    ),
    (
        "numeric empty range",
        {"n": [{"numeric": [">", 5, "<", 1]}]},
        "n[0].numeric",
        "below the upper",
    ),
    (
        "numeric = combined",
        {"n": [{"numeric": ["=", 5, "<", 10]}]},
        "n[0].numeric[0]",
        "cannot be combined",
    ),
    # The guide: anything-but lists contain only strings or only numbers.
    (
        "anything-but mixed list",
        {"s": [{"anything-but": ["a", 1]}]},
        "s[0].anything-but",
        "only strings",
    ),
    ("anything-but empty list", {"s": [{"anything-but": []}]}, "s[0].anything-but", "at least one"),
    ("anything-but null", {"s": [{"anything-but": None}]}, "s[0].anything-but", "only strings"),
    (
        "anything-but exists",
        {"s": [{"anything-but": {"exists": True}}]},
        "s[0].anything-but.exists",
        "prefix",
    ),
    ("cidr without a mask", {"ip": [{"cidr": "10.0.0.1"}]}, "ip[0].cidr", "CIDR"),
    ("cidr garbage", {"ip": [{"cidr": "10.0.0.0/99"}]}, "ip[0].cidr", "not a CIDR"),
    ("$or with one branch", {"$or": [{"a": [1]}]}, "$or", "at least 2"),
    ("$or with a scalar branch", {"$or": [{"a": [1]}, 5]}, "$or[1]", "must be an object"),
    ("$or branch invalid", {"$or": [{"a": [1]}, {"b": 2}]}, "$or[1].b", "array of values"),
]


@pytest.mark.parametrize(
    ("pattern", "path", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_patterns_are_refused_with_the_path_at_fault(
    pattern: Any, path: str, reason: str
) -> None:
    # GIVEN a pattern EventBridge would refuse
    # WHEN it is compiled
    with pytest.raises(ValueError, match="invalid event pattern") as info:
        compile_pattern(pattern)
    # THEN the error names where and why, so a function.toml author knows what to fix
    err = info.value
    assert isinstance(err, InvalidPatternError)
    assert err.path == path
    assert reason in err.reason


def test_catalog_object_trigger_wildcard_escapes_are_valid() -> None:
    # GIVEN the wildcard the catalog builds for an object prefix+suffix with a literal star
    pattern = {"detail": {"object": {"key": [{"wildcard": "in/a\\*b/*.csv"}]}}}
    # THEN it compiles and matches keys literally
    compiled = compile_pattern(pattern)
    assert compiled.matches(event({"object": {"key": "in/a*b/x.csv"}}))
    assert not compiled.matches(event({"object": {"key": "in/aXb/x.csv"}}))


def test_one_event_matches_each_of_100_rules_using_most_operators() -> None:
    # GIVEN 100 rules using most operators, all matching the event (the slowest case to match:
    # its cost is measured by tests/bench/bench_bus.py, `match_one_event_against_100_rules`)
    rules = [
        compile_pattern(
            {
                "source": [f"aib.svc{i}", {"prefix": "aib."}],
                "detail-type": ["Transaction Created"],
                "detail": {
                    "amount": [{"numeric": [">", i, "<=", 1000]}],
                    "card": {"country": [{"anything-but": ["US", "CA"]}]},
                    "tags": [{"wildcard": "*b*"}],
                },
            }
        )
        for i in range(100)
    ]
    evt = event({"amount": 120.5, "card": {"country": "FR"}, "tags": ["a", "b"]})
    # WHEN the event is matched against all of them
    hits = [r.matches(evt) for r in rules]
    # THEN every rule matches, and an amount at a rule's lower bound does not
    assert all(hits)
    edge = event({"amount": 42, "card": {"country": "FR"}, "tags": ["b"]})
    assert [r.matches(edge) for r in rules] == [i < 42 for i in range(100)]
