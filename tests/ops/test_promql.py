"""The PromQL evaluator the alerts' tests rely on: Prometheus' semantics, property by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.ops.promql import STALE, Evaluator, Series, Unsupported, bucket_quantile, firing, labels
from tests.ops.synthetic import HOUR, MINUTE, NOON, counter, gauge, merged

RANGES = {"5m": 300.0, "10m": 600.0, "1h": 3600.0}


def _value(series: Series, expr: str, at: float = NOON) -> float:
    (value,) = Evaluator(series).vector(expr, at).values()
    return value


@given(
    slope=st.floats(0.001, 1000),
    step=st.sampled_from([10.0, 15.0, 30.0, 60.0]),
    window=st.sampled_from(sorted(RANGES)),
    lag=st.floats(0, 9.9),
)
def test_rate_of_a_steady_counter_is_its_slope_and_increase_its_growth(
    slope: float, step: float, window: str, lag: float
) -> None:
    series = counter("c_total", per_s=slope, start=NOON - 2 * HOUR, step=step)
    at = NOON + lag  # between scrapes: the last sample is `lag` old
    assert _value(series, f"rate(c_total[{window}])", at) == pytest.approx(slope, rel=1e-9)
    assert _value(series, f"increase(c_total[{window}])", at) == pytest.approx(slope * RANGES[window], rel=1e-9)


@given(st.lists(st.floats(0, 1e6), min_size=2, max_size=40))
def test_a_counter_that_resets_never_has_a_negative_rate(values: list[float]) -> None:
    series: Series = {labels("c_total"): [(NOON - 30 * (len(values) - i), v) for i, v in enumerate(values)]}
    rate = Evaluator(series).vector("rate(c_total[1h])", NOON)
    assert all(v >= 0 for v in rate.values())


def test_a_counter_reset_counts_what_came_before_it() -> None:
    before = [(NOON - 300 + 60 * i, 100.0 + 10 * i) for i in range(3)]  # 100, 110, 120
    after = [(NOON - 300 + 60 * i, 5.0 * (i - 3)) for i in range(3, 6)]  # 0, 5, 10: restarted
    series: Series = {labels("c_total"): before + after}
    # 20 before the reset, 10 after, over samples spanning 5 of the window's 6 minutes.
    assert _value(series, "increase(c_total[6m])", NOON) == pytest.approx(30 * 360 / 300)


def test_delta_of_a_gauge_is_its_change_over_the_range() -> None:
    series = gauge("g", value=lambda t: 2 * (t - NOON), start=NOON - HOUR)
    assert _value(series, "delta(g[10m])") == pytest.approx(1200)


def test_a_counter_born_inside_the_window_is_not_extrapolated_below_zero() -> None:
    series = counter("c_total", per_s=1.0, start=NOON - 120)
    assert _value(series, "increase(c_total[10m])") == pytest.approx(120, rel=0.05)


@given(
    counts=st.lists(st.integers(0, 1000), min_size=1, max_size=8),
    tail=st.integers(0, 1000),
    phi=st.floats(0.01, 0.99),
)
def test_a_quantile_falls_in_the_bucket_its_rank_falls_in(counts: list[int], tail: int, phi: float) -> None:
    bounds = [0.1 * (i + 1) for i in range(len(counts))]
    cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
    total = cumulative[-1] + tail
    q = bucket_quantile(phi, [*zip(bounds, map(float, cumulative), strict=True), (math.inf, float(total))])
    if total == 0:
        assert math.isnan(q)
        return
    rank = phi * total
    b = next((i for i, c in enumerate(cumulative) if c >= rank), None)
    if b is None:  # in the +Inf bucket: the highest finite bound
        assert q == bounds[-1]
    else:
        assert (0.0 if b == 0 else bounds[b - 1]) <= q <= bounds[b]


def test_histogram_quantile_interpolates_within_a_bucket_per_label_set() -> None:
    series: Series = {
        labels("h_bucket", op="a", le="0.1"): [(NOON, 50.0)],
        labels("h_bucket", op="a", le="0.2"): [(NOON, 100.0)],
        labels("h_bucket", op="a", le="+Inf"): [(NOON, 100.0)],
        labels("h_bucket", op="b", le="0.1"): [(NOON, 0.0)],
        labels("h_bucket", op="b", le="+Inf"): [(NOON, 0.0)],
    }
    result = Evaluator(series).vector("histogram_quantile(0.75, h_bucket)", NOON)
    assert result[labels(op="a")] == pytest.approx(0.15)
    assert math.isnan(result[labels(op="b")])  # no observation: no quantile
    assert math.isnan(bucket_quantile(0.5, [(0.1, 1.0), (0.2, 2.0)]))  # no +Inf bucket


@given(st.lists(st.tuples(st.sampled_from("xyz"), st.sampled_from("pq"), st.floats(-1e6, 1e6)), max_size=20))
def test_sum_by_adds_up_each_group(rows: list[tuple[str, str, float]]) -> None:
    series: Series = {labels("m", a=a, b=b, i=str(i)): [(NOON, v)] for i, (a, b, v) in enumerate(rows)}
    expected: dict[str, float] = {}
    for a, _, v in rows:
        expected[a] = math.fsum([expected.get(a, 0.0), v])
    result = Evaluator(series).vector("sum by (a) (m)", NOON)
    assert {dict(k)["a"]: v for k, v in result.items()} == pytest.approx(expected)


@given(st.dictionaries(st.sampled_from("abcdef"), st.floats(-10, 10), max_size=6))
def test_set_operators_keep_and_drop_whole_series(values: dict[str, float]) -> None:
    series: Series = {labels("x", k=k): [(NOON, v)] for k, v in values.items()}
    series = {**series, **{labels("y", k=k): [(NOON, 1.0)] for k in list(values)[:2]}}
    evaluator = Evaluator(series)
    x = evaluator.vector("x", NOON)
    assert evaluator.vector("x and x", NOON) == x
    assert evaluator.vector("x unless x", NOON) == {}
    assert set(evaluator.vector("x and y", NOON)) | set(evaluator.vector("x unless y", NOON)) == set(x)
    assert evaluator.vector("y or x", NOON).keys() >= evaluator.vector("y", NOON).keys()
    assert evaluator.vector("x and on () vector(1)", NOON) == x
    assert evaluator.vector("x and on () absent(x)", NOON) == {}


def test_one_to_one_and_group_left_matching() -> None:
    series: Series = {
        labels("refused", op="redeem", reason="A"): [(NOON, 2.0)],
        labels("refused", op="redeem", reason="B"): [(NOON, 6.0)],
        labels("total", op="redeem"): [(NOON, 20.0)],
        labels("total", op="grant"): [(NOON, 5.0)],
    }
    evaluator = Evaluator(series)
    ratio = evaluator.vector("refused / ignoring (reason) group_left total", NOON)
    assert ratio == {labels(op="redeem", reason="A"): 0.1, labels(op="redeem", reason="B"): 0.3}
    assert evaluator.vector("total / on (op) total", NOON) == {labels(op="redeem"): 1.0, labels(op="grant"): 1.0}
    with pytest.raises(ValueError, match="many-to-one"):
        evaluator.vector("refused / ignoring (reason) total", NOON)
    with pytest.raises(ValueError, match="many-to-many"):
        evaluator.vector("total / ignoring (reason) refused", NOON)


def test_comparisons_filter_and_keep_the_vectors_value() -> None:
    series: Series = {labels("g", k="a"): [(NOON, 1.0)], labels("g", k="b"): [(NOON, 5.0)]}
    evaluator = Evaluator(series)
    assert evaluator.vector("g > 2", NOON) == {labels("g", k="b"): 5.0}
    assert evaluator.vector("2 < g", NOON) == {labels("g", k="b"): 5.0}
    assert evaluator.vector("g > bool 2", NOON) == {labels(k="a"): 0.0, labels(k="b"): 1.0}
    assert evaluator.vector("g > 3 * g", NOON) == {}
    assert evaluator.vector("-g < -2", NOON) == {labels(k="b"): -5.0}
    assert evaluator.instant("1 / 0", NOON) == math.inf


def test_selectors_look_back_five_minutes_shift_by_offset_and_end_at_a_staleness_marker() -> None:
    series = merged(
        gauge("old", value=1, start=NOON - HOUR, end=NOON - 6 * MINUTE),
        gauge("recent", value=1, start=NOON - HOUR, end=NOON - 4 * MINUTE),
        gauge("gone", value=1, start=NOON - HOUR, end=NOON - 2 * MINUTE, stale=True),
        gauge("ramp", value=lambda t: t - NOON, start=NOON - 2 * HOUR),
    )
    evaluator = Evaluator(series)
    assert evaluator.vector("old", NOON) == {}
    assert evaluator.vector("recent", NOON) == {labels("recent"): 1.0}
    assert evaluator.vector("gone", NOON) == {}
    assert evaluator.vector("ramp offset 1h", NOON) == {labels("ramp"): -HOUR}


def test_absent_hour_vector_and_max_over_time() -> None:
    series = gauge("g", {"k": "a"}, value=lambda t: 1.0 if t < NOON - 60 else 0.0, start=NOON - HOUR)
    evaluator = Evaluator(series)
    assert evaluator.vector('absent(missing{job="w", k=~"a|b"})', NOON) == {labels(job="w"): 1.0}
    assert evaluator.vector("absent(g)", NOON) == {}
    assert evaluator.vector("hour()", NOON) == {labels(): 12.0}
    assert evaluator.vector("vector(1) and on () (hour() >= 8 and hour() < 22)", NOON) == {labels(): 1.0}
    assert evaluator.vector("vector(1) and on () (hour() >= 13)", NOON) == {}
    assert evaluator.vector("max_over_time(g[2m])", NOON) == {labels(k="a"): 1.0}
    assert evaluator.vector("max_over_time(g[1m])", NOON) == {labels(k="a"): 0.0}


def test_recording_rules_are_selected_by_name_and_labels() -> None:
    series = merged(
        gauge("g", {"k": "a"}, value=2, start=NOON - HOUR), gauge("g", {"k": "b"}, value=3, start=NOON - HOUR)
    )
    evaluator = Evaluator(series, {"k:g:doubled": "2 * g"})
    assert evaluator.vector('k:g:doubled{k="b"}', NOON) == {labels("k:g:doubled", k="b"): 6.0}
    with pytest.raises(Unsupported, match="range over a recording rule"):
        evaluator.vector("rate(k:g:doubled[5m])", NOON)


@pytest.mark.parametrize(
    "expr",
    ['topk(1, g)', 'a / on (k) group_right b', 'g[10m:1m]', 'g @ 100', 'label_replace(g, "a", "$1", "k", "(.*)")',
     'g{k="a" or k="b"}', 'quantile_over_time(0.5, g[5m])'],
)  # fmt: skip
def test_what_it_does_not_implement_it_refuses(expr: str) -> None:
    with pytest.raises(Unsupported):
        Evaluator(gauge("g", {"k": "a"}, value=1, start=NOON - HOUR)).instant(expr, NOON)


def test_an_alert_fires_once_its_condition_held_for_the_whole_for() -> None:
    series = gauge("g", value=lambda t: 1.0 if t >= NOON - 10 * MINUTE else 0.0, start=NOON - HOUR)
    evaluator = Evaluator(series)
    assert firing(evaluator, "g > 0", for_s=600, at=NOON) == {labels()}
    assert firing(evaluator, "g > 0", for_s=660, at=NOON) == set()
    assert firing(evaluator, "g > 0", for_s=0, at=NOON - 11 * MINUTE) == set()
    assert STALE != STALE  # a NaN: never equal to a value a series could hold
