"""A small PromQL evaluator over synthetic series, so that the alerts' thresholds can be tested
without a Prometheus server.

It walks `promql_parser`'s AST and covers the subset `ops/prometheus/alerts.yml` uses: selectors
with label matchers and `offset`; `rate`, `increase`, `delta`, `max_over_time` over a range;
`histogram_quantile`, `absent`, `hour`, `vector`; `sum`, `min`, `max`, `avg`, `count` by or without
labels; arithmetic, comparisons (as filters, or with `bool`) and `and`, `or`, `unless`, matched on
all labels, `on` or `ignoring`, one-to-one or `group_left`. Anything else raises
`Unsupported`, so a rule that outgrows it fails its test instead of being judged by a guess.

The semantics are Prometheus' (3.x): an instant selector takes each series' last sample in the 5
minutes up to the evaluation time; a range takes the samples in (t - range, t]; rate, increase and
delta extrapolate to the range's edges as Prometheus does; histogram_quantile interpolates linearly
within the bucket the rank falls in; comparisons keep the left-hand value; arithmetic and functions
drop the metric name. Recording rules are evaluated at the time their name is selected.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import promql_parser as pp

Labels = frozenset[tuple[str, str]]
Sample = tuple[float, float]  # (unix seconds, value)
Series = Mapping[Labels, Sequence[Sample]]
Vector = dict[Labels, float]
Value = float | Vector

LOOKBACK_S = 300.0
NAME = "__name__"
# Prometheus' staleness marker, written when a scrape no longer returns a series: the series is gone
# from that instant, not 5 minutes later. A NaN sample here (synthetic series hold no other NaN).
STALE = math.nan


def _divide(a: float, b: float) -> float:
    """IEEE 754 division, as Prometheus' float64: x/0 is ±Inf, 0/0 NaN."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
}
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
SET_OPERATORS = ("and", "or", "unless")


class Unsupported(Exception):
    """The expression uses PromQL this evaluator does not implement."""


def labels(name: str | None = None, **pairs: str) -> Labels:
    """A label set; the metric's name, if given, as `__name__`."""
    return frozenset({**pairs, **({NAME: name} if name else {})}.items())


def without_name(ls: Labels) -> Labels:
    return frozenset((k, v) for k, v in ls if k != NAME)


class Evaluator:
    """Evaluates expressions at an instant over `series`; `recorded` maps a recording rule's name
    to its expression, evaluated whenever that name is selected."""

    def __init__(self, series: Series, recorded: Mapping[str, str] | None = None) -> None:
        self.series = series
        self.recorded = {name: pp.parse(expr) for name, expr in (recorded or {}).items()}

    def instant(self, expr: str | pp.Expr, at: float) -> Value:
        node = pp.parse(expr) if isinstance(expr, str) else expr
        return self._eval(node, at)

    def vector(self, expr: str | pp.Expr, at: float) -> Vector:
        value = self.instant(expr, at)
        if not isinstance(value, dict):
            raise Unsupported(f"a rule must be a vector, not the scalar {value}")
        return value

    def _eval(self, node: pp.Expr, at: float) -> Value:
        if isinstance(node, pp.NumberLiteral):
            return node.val
        if isinstance(node, pp.ParenExpr):
            return self._eval(node.expr, at)
        if isinstance(node, pp.UnaryExpr):
            inner = self._eval(node.expr, at)
            return -inner if isinstance(inner, float) else {without_name(k): -v for k, v in inner.items()}
        if isinstance(node, pp.VectorSelector):
            return self._select(node, at)
        if isinstance(node, pp.Call):
            return self._call(node, at)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node, at)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node, at)
        raise Unsupported(f"{type(node).__name__}: {node}")

    def _select(self, node: pp.VectorSelector, at: float) -> Vector:
        if node.at is not None:
            raise Unsupported("the @ modifier")
        at -= _seconds(node.offset)
        if node.name in self.recorded:
            recorded = self.vector(self.recorded[node.name], at)
            named = {without_name(k) | {(NAME, node.name)}: v for k, v in recorded.items()}
            return {k: v for k, v in named.items() if _matches(node, k)}
        found: Vector = {}
        for series_labels, samples in self.series.items():
            if not _matches(node, series_labels):
                continue
            recent = [v for t, v in samples if at - LOOKBACK_S < t <= at]
            if recent and not math.isnan(recent[-1]):
                found[series_labels] = recent[-1]
        return found

    def _range(self, node: pp.MatrixSelector, at: float) -> dict[Labels, list[Sample]]:
        selector = node.vector_selector
        if selector.name in self.recorded:
            raise Unsupported("a range over a recording rule: select the raw series instead")
        if selector.at is not None:
            raise Unsupported("the @ modifier")
        end = at - _seconds(selector.offset)
        start = end - _seconds(node.range)
        return {
            series_labels: window
            for series_labels, samples in self.series.items()
            if _matches(selector, series_labels)
            and (window := [(t, v) for t, v in samples if start < t <= end and not math.isnan(v)])
        }

    def _call(self, node: pp.Call, at: float) -> Value:
        name = node.func.name
        args: list[pp.Expr] = list(node.args)
        if name in ("rate", "increase", "delta", "max_over_time"):
            (matrix,) = args
            if not isinstance(matrix, pp.MatrixSelector):
                raise Unsupported(f"{name} of a {type(matrix).__name__}")
            return self._over_range(name, matrix, at)
        if name == "histogram_quantile":
            phi, buckets = args
            return histogram_quantile(_scalar(self._eval(phi, at)), self._as_vector(buckets, at))
        if name == "absent":
            (arg,) = args
            return {} if self._as_vector(arg, at) else {_absent_labels(arg): 1.0}
        if name == "hour":
            if not args:
                return {frozenset(): float(datetime.fromtimestamp(at, UTC).hour)}
            hours = self._as_vector(args[0], at)
            return {without_name(k): float(datetime.fromtimestamp(v, UTC).hour) for k, v in hours.items()}
        if name == "time":
            return at
        if name == "vector":
            return {frozenset(): _scalar(self._eval(args[0], at))}
        raise Unsupported(f"the function {name}")

    def _over_range(self, name: str, matrix: pp.MatrixSelector, at: float) -> Vector:
        range_s = _seconds(matrix.range)
        result: Vector = {}
        for series_labels, window in self._range(matrix, at).items():
            if name == "max_over_time":
                result[without_name(series_labels)] = max(v for _, v in window)
                continue
            value = extrapolated_rate(
                window,
                at - _seconds(matrix.vector_selector.offset),
                range_s,
                counter=name != "delta",
                rate=name == "rate",
            )
            if value is not None:
                result[without_name(series_labels)] = value
        return result

    def _as_vector(self, node: pp.Expr, at: float) -> Vector:
        value = self._eval(node, at)
        if not isinstance(value, dict):
            raise Unsupported(f"a scalar where a vector is needed: {node}")
        return value

    def _aggregate(self, node: pp.AggregateExpr, at: float) -> Vector:
        op = str(node.op)
        reducers: dict[str, Callable[[list[float]], float]] = {
            "sum": math.fsum,
            "min": min,
            "max": max,
            "avg": lambda vs: math.fsum(vs) / len(vs),
            "count": lambda vs: float(len(vs)),
        }
        if op not in reducers or node.param is not None:
            raise Unsupported(f"the aggregation {op}")
        groups: dict[Labels, list[float]] = {}
        for series_labels, value in self._as_vector(node.expr, at).items():
            groups.setdefault(_grouping(node.modifier, series_labels), []).append(value)
        return {group: reducers[op](values) for group, values in groups.items()}

    def _binary(self, node: pp.BinaryExpr, at: float) -> Value:
        op = str(node.op)
        lhs, rhs = self._eval(node.lhs, at), self._eval(node.rhs, at)
        modifier = node.modifier
        return_bool = modifier is not None and modifier.return_bool
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in COMPARISONS:
                if not return_bool:
                    raise Unsupported("a comparison of two scalars needs bool")
                return float(COMPARISONS[op](lhs, rhs))
            return _arithmetic(op, lhs, rhs)
        if isinstance(lhs, dict) and isinstance(rhs, dict):
            if op in SET_OPERATORS:
                return set_operation(op, lhs, rhs, modifier)
            return vector_match(op, lhs, rhs, modifier)
        if isinstance(lhs, dict) and isinstance(rhs, float):
            return _with_scalar(op, lhs, rhs, return_bool, vector_first=True)
        assert isinstance(lhs, float)
        assert isinstance(rhs, dict)
        return _with_scalar(op, rhs, lhs, return_bool, vector_first=False)


def extrapolated_rate(
    window: Sequence[Sample], end: float, range_s: float, *, counter: bool, rate: bool
) -> float | None:
    """Prometheus' `extrapolatedRate`: the change over the samples in the window, counter resets
    added back, extrapolated towards the window's edges (to zero at most, for a counter)."""
    if len(window) < 2:
        return None
    (first_t, first_v), (last_t, last_v) = window[0], window[-1]
    change = last_v - first_v
    if counter:
        change += sum(previous for (_, previous), (_, current) in itertools.pairwise(window) if current < previous)
    sampled = last_t - first_t
    to_start, to_end = first_t - (end - range_s), end - last_t
    average_step = sampled / (len(window) - 1)
    # A sample missing where one was due means the series starts (or ends) inside the window.
    threshold = average_step * 1.1
    if to_start >= threshold:
        to_start = average_step / 2
    if counter and change > 0 and first_v >= 0:
        to_start = min(to_start, sampled * (first_v / change))  # a counter starts at zero, not below
    if to_end >= threshold:
        to_end = average_step / 2
    change *= (sampled + to_start + to_end) / sampled
    return change / range_s if rate else change


def histogram_quantile(phi: float, buckets: Vector) -> Vector:
    """Prometheus' `histogram_quantile` over classic buckets (`le` labels), per label set."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for series_labels, count in buckets.items():
        le = dict(series_labels).get("le")
        if le is None:
            continue
        group = frozenset((k, v) for k, v in series_labels if k not in (NAME, "le"))
        groups.setdefault(group, []).append((float(le), count))
    return {group: bucket_quantile(phi, found) for group, found in groups.items()}


def bucket_quantile(phi: float, buckets: Iterable[tuple[float, float]]) -> float:
    if math.isnan(phi):
        return math.nan
    if phi < 0 or phi > 1:
        return -math.inf if phi < 0 else math.inf
    merged: dict[float, float] = {}
    for upper, count in buckets:
        merged[upper] = merged.get(upper, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or ordered[-1][0] != math.inf:
        return math.nan
    monotonic: list[tuple[float, float]] = []
    for upper, count in ordered:
        monotonic.append((upper, max(count, monotonic[-1][1] if monotonic else count)))
    observations = monotonic[-1][1]
    if observations == 0:
        return math.nan
    rank = phi * observations
    b = next(i for i, (_, count) in enumerate(monotonic) if count >= rank)
    if b == len(monotonic) - 1:
        return monotonic[-2][0]
    if b == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start = 0.0 if b == 0 else monotonic[b - 1][0]
    end, count = monotonic[b]
    if b > 0:
        count -= monotonic[b - 1][1]
        rank -= monotonic[b - 1][1]
    return start + (end - start) * (rank / count)


def set_operation(op: str, lhs: Vector, rhs: Vector, modifier: pp.BinModifier | None) -> Vector:
    matching = modifier.matching if modifier else None
    right = {_signature(matching, k) for k in rhs}
    if op == "and":
        return {k: v for k, v in lhs.items() if _signature(matching, k) in right}
    if op == "unless":
        return {k: v for k, v in lhs.items() if _signature(matching, k) not in right}
    left = {_signature(matching, k) for k in lhs}
    return {**lhs, **{k: v for k, v in rhs.items() if _signature(matching, k) not in left}}


def vector_match(op: str, lhs: Vector, rhs: Vector, modifier: pp.BinModifier | None) -> Vector:
    """Arithmetic or comparison between two vectors: one-to-one, or many-to-one with group_left."""
    card = modifier.card if modifier else pp.VectorMatchCardinality.OneToOne
    if card == pp.VectorMatchCardinality.OneToMany:
        raise Unsupported("group_right")
    matching = modifier.matching if modifier else None
    return_bool = modifier is not None and modifier.return_bool
    one_side: dict[Labels, tuple[Labels, float]] = {}
    for k, v in rhs.items():
        sig = _signature(matching, k)
        if sig in one_side:
            raise ValueError(f"many-to-many matching: two right-hand series match {sorted(sig)}")
        one_side[sig] = (k, v)
    result: Vector = {}
    for k, v in lhs.items():
        match = one_side.get(_signature(matching, k))
        if match is None:
            continue
        out = _result_labels(op, k, match[0], modifier, return_bool)
        if out in result:
            raise ValueError(f"many-to-one matching without group_left: {sorted(out)} twice")
        if op in ARITHMETIC:
            result[out] = ARITHMETIC[op](v, match[1])
        elif return_bool:
            result[out] = float(COMPARISONS[op](v, match[1]))
        elif COMPARISONS[op](v, match[1]):
            result[out] = v
    return result


def _result_labels(op: str, lhs: Labels, rhs: Labels, modifier: pp.BinModifier | None, return_bool: bool) -> Labels:
    out = dict(lhs)
    if op in ARITHMETIC or return_bool:
        out.pop(NAME, None)
    matching = modifier.matching if modifier else None
    card = modifier.card if modifier else pp.VectorMatchCardinality.OneToOne
    if card == pp.VectorMatchCardinality.OneToOne and matching is not None:
        if matching.type == pp.LabelModifierType.Include:
            out = {k: v for k, v in out.items() if k in matching.labels}
        else:
            out = {k: v for k, v in out.items() if k not in matching.labels}
    if card == pp.VectorMatchCardinality.ManyToOne and modifier is not None:
        right = dict(rhs)
        for name in modifier.group_labels or []:
            if name in right:
                out[name] = right[name]
            else:
                out.pop(name, None)
    return frozenset(out.items())


def _signature(matching: pp.LabelModifier | None, ls: Labels) -> Labels:
    if matching is None:
        return without_name(ls)
    if matching.type == pp.LabelModifierType.Include:
        return frozenset((k, v) for k, v in ls if k in matching.labels)
    return frozenset((k, v) for k, v in ls if k != NAME and k not in matching.labels)


def _grouping(modifier: pp.AggModifier | None, ls: Labels) -> Labels:
    if modifier is None:
        return frozenset()
    if modifier.type == pp.AggModifierType.By:
        return frozenset((k, v) for k, v in ls if k in modifier.labels)
    return frozenset((k, v) for k, v in ls if k != NAME and k not in modifier.labels)


def _with_scalar(op: str, vector: Vector, scalar: float, return_bool: bool, *, vector_first: bool) -> Vector:
    """A vector and a scalar; a comparison keeps the vector's value, on whichever side it is."""
    result: Vector = {}
    for k, v in vector.items():
        a, b = (v, scalar) if vector_first else (scalar, v)
        if op in ARITHMETIC:
            result[without_name(k)] = ARITHMETIC[op](a, b)
        elif return_bool:
            result[without_name(k)] = float(COMPARISONS[op](a, b))
        elif COMPARISONS[op](a, b):
            result[k] = v
    return result


def _arithmetic(op: str, a: float, b: float) -> float:
    if op not in ARITHMETIC:
        raise Unsupported(f"the operator {op}")
    return ARITHMETIC[op](a, b)


def _matches(selector: pp.VectorSelector, ls: Labels) -> bool:
    if selector.matchers.or_matchers:
        raise Unsupported("`or` inside a selector's braces")
    values = dict(ls)
    if selector.name is not None and values.get(NAME) != selector.name:
        return False
    return all(_matcher_holds(m, values.get(m.name, "")) for m in selector.matchers.matchers)


def _matcher_holds(matcher: pp.Matcher, value: str) -> bool:
    if matcher.op == pp.MatchOp.Equal:
        return value == matcher.value
    if matcher.op == pp.MatchOp.NotEqual:
        return value != matcher.value
    full = re.fullmatch(matcher.value, value) is not None
    return full if matcher.op == pp.MatchOp.Re else not full


def _absent_labels(node: pp.Expr) -> Labels:
    """absent()'s result carries the equality matchers of the selector it was given."""
    selector = node.vector_selector if isinstance(node, pp.MatrixSelector) else node
    if not isinstance(selector, pp.VectorSelector):
        return frozenset()
    return frozenset(
        (m.name, m.value) for m in selector.matchers.matchers if m.op == pp.MatchOp.Equal and m.name != NAME
    )


def _scalar(value: Value) -> float:
    if not isinstance(value, float):
        raise Unsupported("a vector where a scalar is needed")
    return value


def _seconds(delta: timedelta | None) -> float:
    return 0.0 if delta is None else delta.total_seconds()


def firing(evaluator: Evaluator, expr: str, *, for_s: float, at: float, step_s: float = 60.0) -> set[Labels]:
    """The label sets an alert fires for at `at`, as Prometheus decides it: present at every
    evaluation (`step_s` apart, a rule group's interval) over the `for` that ends at `at`."""
    node = pp.parse(expr)
    times = [at - for_s + i * step_s for i in range(int(for_s // step_s) + 1)]
    present = [{without_name(k) for k in evaluator.vector(node, t)} for t in times]
    return set.intersection(*present)
