"""EventBridge event patterns: validated once, compiled to closures, matched in microseconds.

`compile_pattern` checks a pattern the way EventBridge does when a rule is created (the catalog
and CDK call it on every `function.toml` pattern) and returns a `Pattern` whose `matches(event)`
runs against the full event envelope (`source`, `detail-type`, `detail`, `resources`, ...).

Semantics follow EventBridge content filtering (and aws/event-ruler, its open-source engine):

- A pattern is a JSON object; every field must match (AND). A field's value is either a nested
  object or a non-empty array of matchers, which are OR'ed.
- Matchers: exact values (string, number, boolean, null); `prefix`, `suffix` (each optionally
  `{"equals-ignore-case": ...}`), `equals-ignore-case`, `wildcard`, `numeric`, `exists`,
  `anything-but` (values, or `prefix`/`suffix`/`wildcard`/`equals-ignore-case`), `cidr`, and
  `"$or": [pattern, pattern, ...]` at any object level.
- Only leaf values are matched: objects are never values. When the event holds an array, the
  field matches if any element matches; objects inside arrays are matched element by element, so
  two fields of one nested pattern must match inside the same element (event-ruler's
  "array-consistent" matching).
- String operators only match strings; `numeric` only matches JSON numbers (never the string
  `"5"`); exact numbers compare by value (`5` matches `5.0`), booleans are not numbers.
- `exists: false` matches a missing field (or one holding no leaf value, like an object);
  `anything-but` needs the field to be present.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InvalidPatternError", "Pattern", "compile_pattern"]

#: A predicate on one leaf value of the event (str, int, float, bool or None).
_ValuePred = Callable[[Any], bool]
#: A predicate on one JSON object of the event.
_ObjectPred = Callable[[Mapping[str, Any]], bool]

_MISSING: Any = object()
_EMPTY: Mapping[str, Any] = {}
_OR = "$or"
_NUMERIC_OPS = ("=", "<", "<=", ">", ">=")
_OPERATORS = (
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "numeric",
    "exists",
    "anything-but",
    "cidr",
)


class InvalidPatternError(ValueError):
    """A pattern EventBridge would refuse; the message names the path and what to fix."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path or "(pattern)"
        self.reason = reason
        super().__init__(f"invalid event pattern at {self.path}: {reason}")


@dataclass(frozen=True)
class Pattern:
    """A compiled event pattern. `source` is the pattern as written."""

    source: Mapping[str, Any]
    _match: _ObjectPred = field(repr=False, compare=False)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether `event` (a full EventBridge envelope, parsed JSON) matches the pattern."""
        return self._match(event)


def compile_pattern(pattern: Mapping[str, Any] | str) -> Pattern:
    """Validate an EventBridge pattern (a dict, or its JSON text) and compile it.

    Raises `InvalidPatternError` (a `ValueError`) naming the offending path, e.g.
    `detail.amount[0].numeric`, and why it is refused.
    """
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern)
        except json.JSONDecodeError as e:
            raise InvalidPatternError("", f"not valid JSON: {e}") from e
    if not isinstance(pattern, Mapping):
        raise InvalidPatternError("", f"must be a JSON object, got {_kind(pattern)}")
    return Pattern(source=pattern, _match=_compile_object(pattern, ""))


# -- structure ---------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _compile_object(node: Mapping[str, Any], path: str) -> _ObjectPred:
    if not node:
        raise InvalidPatternError(path, "an empty object matches nothing; name at least one field")
    # (cost rank, check): leaf fields first, nested objects next, $or last, so that a
    # non-matching event is usually refused by its first, cheapest check.
    checks: list[tuple[int, _ObjectPred]] = []
    for key, value in node.items():
        if not isinstance(key, str):
            raise InvalidPatternError(path, f"field names must be strings, got {key!r}")
        here = _join(path, key)
        if key == _OR:
            checks.append((2, _compile_or(value, here)))
        elif isinstance(value, Mapping):
            checks.append((1, _nested(key, _compile_object(value, here))))
        elif isinstance(value, list | tuple):
            checks.append((0, _leaf(key, _compile_leaf(value, here))))
        else:
            raise InvalidPatternError(
                here,
                f"must be an object (a nested pattern) or an array of values to match, "
                f"got {_kind(value)}; write [{json.dumps(value)}] to match that value",
            )
    ordered = tuple(check for _, check in sorted(checks, key=lambda c: c[0]))
    if len(ordered) == 1:
        return ordered[0]
    if len(ordered) == 2:
        first, second = ordered
        return lambda obj: first(obj) and second(obj)

    def all_match(obj: Mapping[str, Any]) -> bool:
        # Plain loops, not all()/any() over a generator: this is the hot path, and a
        # generator costs about as much as a simple check.
        for check in ordered:  # noqa: SIM110
            if not check(obj):
                return False
        return True

    return all_match


def _compile_or(value: Any, path: str) -> _ObjectPred:
    if not isinstance(value, list | tuple) or len(value) < 2:
        raise InvalidPatternError(path, "$or needs an array of at least 2 patterns")
    alternatives = []
    for i, alt in enumerate(value):
        if not isinstance(alt, Mapping):
            raise InvalidPatternError(f"{path}[{i}]", f"must be an object, got {_kind(alt)}")
        alternatives.append(_compile_object(alt, f"{path}[{i}]"))
    alts = tuple(alternatives)

    def any_match(obj: Mapping[str, Any]) -> bool:
        for alt in alts:  # noqa: SIM110 (hot path, see all_match)
            if alt(obj):
                return True
        return False

    return any_match


def _nested(key: str, sub: _ObjectPred) -> _ObjectPred:
    def match_value(value: Any) -> bool:
        if isinstance(value, Mapping):
            return sub(value)
        if isinstance(value, list):
            # Array-consistent: the whole sub-pattern must match within one element.
            return any(match_value(v) for v in value) if value else sub(_EMPTY)
        # Missing, or a leaf where the pattern expects an object: nothing lives under this
        # path, which only `exists: false` accepts.
        return sub(_EMPTY)

    return lambda obj: match_value(obj.get(key, _MISSING))


def _leaf_values(value: Any, out: list[Any]) -> None:
    for v in value:
        if isinstance(v, list):
            _leaf_values(v, out)
        elif not isinstance(v, Mapping):
            out.append(v)


@dataclass
class _Leaf:
    """The matchers of one field, sorted by what they need."""

    value_preds: list[_ValuePred] = field(default_factory=list)
    exists_true: bool = False
    exists_false: bool = False


def _leaf(key: str, leaf: _Leaf) -> _ObjectPred:
    preds = tuple(leaf.value_preds)
    exists_true, exists_false = leaf.exists_true, leaf.exists_false
    single = preds[0] if len(preds) == 1 else None

    def check(obj: Mapping[str, Any]) -> bool:
        value = obj.get(key, _MISSING)
        if value is _MISSING or isinstance(value, Mapping):
            return exists_false
        if isinstance(value, list):
            values: list[Any] = []
            _leaf_values(value, values)
            if not values:
                return exists_false
        else:
            if single is not None:
                return exists_true or single(value)
            values = [value]
        if exists_true:
            return True
        for v in values:
            for pred in preds:
                if pred(v):
                    return True
        return False

    return check


# -- matchers ----------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_number(v: Any, path: str) -> float:
    if not _is_number(v):
        raise InvalidPatternError(path, f"expected a number, got {_kind(v)}")
    if not math.isfinite(v):
        raise InvalidPatternError(path, f"expected a finite number, got {v}")
    return float(v)


def _check_str(v: Any, path: str, what: str) -> str:
    if not isinstance(v, str):
        raise InvalidPatternError(path, f"{what} takes a string, got {_kind(v)}")
    return v


def _compile_leaf(matchers: list[Any] | tuple[Any, ...], path: str) -> _Leaf:
    if not matchers:
        raise InvalidPatternError(path, "empty arrays are not allowed (they match nothing)")
    leaf = _Leaf()
    strings: set[str] = set()
    numbers: set[float] = set()
    literals: set[Any] = set()  # True, False, None
    for i, m in enumerate(matchers):
        here = f"{path}[{i}]"
        if m is None or isinstance(m, bool):
            literals.add(m)
        elif isinstance(m, str):
            strings.add(m)
        elif _is_number(m):
            numbers.add(_check_number(m, here))
        elif isinstance(m, Mapping):
            _compile_operator(m, here, leaf)
        elif isinstance(m, list | tuple):
            raise InvalidPatternError(here, "arrays cannot nest; list the values side by side")
        else:
            raise InvalidPatternError(here, f"cannot match {_kind(m)}")
    if strings or numbers or literals:
        leaf.value_preds.insert(0, _exact(frozenset(strings), frozenset(numbers), literals))
    return leaf


def _exact(strings: frozenset[str], numbers: frozenset[float], literals: set[Any]) -> _ValuePred:
    has_true, has_false, has_null = True in literals, False in literals, None in literals

    def pred(v: Any) -> bool:
        t = type(v)
        if t is str:
            return v in strings
        if t is bool:
            return has_true if v else has_false
        if t is int or t is float:
            return v in numbers  # 5 == 5.0: numbers compare by value
        return v is None and has_null

    return pred


def _compile_operator(m: Mapping[str, Any], path: str, leaf: _Leaf) -> None:
    if len(m) != 1:
        raise InvalidPatternError(
            path, f"a matcher object holds exactly one operator, got {sorted(m) or 'none'}"
        )
    ((op, arg),) = m.items()
    here = _join(path, str(op))
    if op == "exists":
        if not isinstance(arg, bool):
            raise InvalidPatternError(here, f"exists takes true or false, got {_kind(arg)}")
        if arg:
            leaf.exists_true = True
        else:
            leaf.exists_false = True
        return
    pred: _ValuePred
    if op == "prefix":
        pred = _affix(arg, here, "prefix", str.startswith)
    elif op == "suffix":
        pred = _affix(arg, here, "suffix", str.endswith)
    elif op == "equals-ignore-case":
        folded = _check_str(arg, here, "equals-ignore-case").lower()
        pred = lambda v: type(v) is str and v.lower() == folded  # noqa: E731
    elif op == "wildcard":
        regex = _wildcard(_check_str(arg, here, "wildcard"), here)
        pred = lambda v: type(v) is str and regex.fullmatch(v) is not None  # noqa: E731
    elif op == "numeric":
        pred = _numeric(arg, here)
    elif op == "cidr":
        pred = _cidr(arg, here)
    elif op == "anything-but":
        pred = _anything_but(arg, here)
    else:
        raise InvalidPatternError(
            here, f"unknown operator {op!r}; expected one of {', '.join(_OPERATORS)}"
        )
    leaf.value_preds.append(pred)


def _affix(arg: Any, path: str, what: str, test: Callable[[str, str], bool]) -> _ValuePred:
    if isinstance(arg, Mapping):
        if set(arg) != {"equals-ignore-case"}:
            raise InvalidPatternError(
                path, f'{what} takes a string or {{"equals-ignore-case": "<string>"}}'
            )
        folded = _check_str(arg["equals-ignore-case"], _join(path, "equals-ignore-case"), what)
        folded = folded.lower()
        return lambda v: type(v) is str and test(v.lower(), folded)
    s = _check_str(arg, path, what)
    return lambda v: type(v) is str and test(v, s)


def _wildcard(text: str, path: str) -> re.Pattern[str]:
    """`*` matches any run of characters; `\\*` is a literal star and `\\\\` a backslash."""
    parts: list[str] = []
    i, previous_star = 0, False
    while i < len(text):
        c = text[i]
        if c == "*":
            if previous_star:
                raise InvalidPatternError(path, "consecutive wildcard characters are not allowed")
            parts.append(".*")
            previous_star = True
            i += 1
            continue
        previous_star = False
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "*\\":
                raise InvalidPatternError(
                    path, "a backslash may only escape '*' or another backslash"
                )
            parts.append(re.escape(text[i + 1]))
            i += 2
            continue
        parts.append(re.escape(c))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _numeric(arg: Any, path: str) -> _ValuePred:
    usage = 'expected ["=", n] or one or two bounds like [">", 0, "<=", 5]'
    if not isinstance(arg, list | tuple) or not arg or len(arg) % 2:
        raise InvalidPatternError(path, f"{usage}, got {json.dumps(arg, default=str)}")
    lower: tuple[str, float] | None = None
    upper: tuple[str, float] | None = None
    equal: float | None = None
    for j in range(0, len(arg), 2):
        op, here = arg[j], f"{path}[{j}]"
        if op not in _NUMERIC_OPS:
            raise InvalidPatternError(
                here, f"unknown numeric operator {op!r}; expected one of {_NUMERIC_OPS}"
            )
        n = _check_number(arg[j + 1], f"{path}[{j + 1}]")
        if op == "=":
            if len(arg) != 2:
                raise InvalidPatternError(here, "'=' cannot be combined with other operators")
            equal = n
        elif op in (">", ">="):
            if lower is not None:
                raise InvalidPatternError(here, "only one lower bound ('>' or '>=') is allowed")
            lower = (op, n)
        else:
            if upper is not None:
                raise InvalidPatternError(here, "only one upper bound ('<' or '<=') is allowed")
            upper = (op, n)
    if lower and upper and lower[1] >= upper[1]:
        raise InvalidPatternError(path, "the lower bound must be below the upper bound")
    if equal is not None:
        eq = equal
        return lambda v: _is_number(v) and v == eq
    lo = -math.inf if lower is None else lower[1]
    hi = math.inf if upper is None else upper[1]
    lo_open = lower is None or lower[0] == ">"
    hi_open = upper is None or upper[0] == "<"

    def pred(v: Any) -> bool:
        t = type(v)
        if t is not int and t is not float:
            return False  # numeric matching only applies to JSON numbers (bool is not one)
        above: bool = v > lo if lo_open else v >= lo
        below: bool = v < hi if hi_open else v <= hi
        return above and below

    return pred


def _cidr(arg: Any, path: str) -> _ValuePred:
    text = _check_str(arg, path, "cidr")
    if "/" not in text:
        raise InvalidPatternError(path, f"expected a CIDR block like 10.0.0.0/24, got {text!r}")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise InvalidPatternError(path, f"not a CIDR block: {e}") from e

    def pred(v: Any) -> bool:
        if type(v) is not str:
            return False
        try:
            return ipaddress.ip_address(v) in net
        except ValueError:
            return False

    return pred


def _string_list(arg: Any, path: str, what: str) -> tuple[str, ...]:
    if isinstance(arg, list | tuple):
        if not arg:
            raise InvalidPatternError(path, f"{what} needs at least one string")
        return tuple(_check_str(s, f"{path}[{i}]", what) for i, s in enumerate(arg))
    return (_check_str(arg, path, what),)


def _anything_but(arg: Any, path: str) -> _ValuePred:
    """Matches a present leaf value that is none of the given ones (any type of value)."""
    if isinstance(arg, Mapping):
        if len(arg) != 1:
            raise InvalidPatternError(
                path, "anything-but takes one of prefix, suffix, wildcard, equals-ignore-case"
            )
        ((op, inner),) = arg.items()
        here = _join(path, str(op))
        excluded: _ValuePred
        if op in ("prefix", "suffix"):
            affixes = _string_list(inner, here, op)
            test = str.startswith if op == "prefix" else str.endswith
            excluded = lambda v: any(test(v, a) for a in affixes)  # noqa: E731
        elif op == "equals-ignore-case":
            folded = frozenset(s.lower() for s in _string_list(inner, here, op))
            excluded = lambda v: v.lower() in folded  # noqa: E731
        elif op == "wildcard":
            regexes = [_wildcard(s, here) for s in _string_list(inner, here, op)]
            excluded = lambda v: any(r.fullmatch(v) for r in regexes)  # noqa: E731
        else:
            raise InvalidPatternError(
                here,
                "anything-but takes a value, a list of values, or one of prefix, suffix, "
                "wildcard, equals-ignore-case",
            )
        # A non-string value cannot start with a prefix (etc.), so it is "anything but" it.
        return lambda v: type(v) is not str or not excluded(v)
    values = list(arg) if isinstance(arg, list | tuple) else [arg]
    if not values:
        raise InvalidPatternError(path, "anything-but needs at least one value")
    if all(isinstance(v, str) for v in values):
        strings = frozenset(values)
        return lambda v: type(v) is not str or v not in strings
    if all(_is_number(v) for v in values):
        numbers = frozenset(_check_number(v, path) for v in values)
        return lambda v: not (_is_number(v) and v in numbers)
    raise InvalidPatternError(
        path,
        "anything-but takes a string, a number, or a list of only strings or only numbers, "
        f"got {json.dumps(arg, default=str)}",
    )
