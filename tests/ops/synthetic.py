"""Synthetic series for the alerts' tests: counters, gauges and classic histograms sampled as a
scrape would sample them, over a stretch of time, ending (if asked) with a staleness marker."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from tests.ops.promql import STALE, Labels, Sample, labels

# A Friday at noon UTC: inside the default traffic hours.
NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
SCRAPE_S = 30.0

Rate = float | Callable[[float], float]
SeriesSet = dict[Labels, list[Sample]]


def _times(start: float, end: float, step: float) -> list[float]:
    return [start + i * step for i in range(int((end - start) // step) + 1)]


def _rate_at(rate: Rate, t: float) -> float:
    return rate(t) if callable(rate) else rate


def counter(
    name: str,
    ls: Mapping[str, str] | None = None,
    *,
    per_s: Rate,
    start: float,
    end: float = NOON,
    step: float = SCRAPE_S,
    stale: bool = False,
) -> SeriesSet:
    """A counter growing at `per_s` (a number, or a function of time), from 0 at `start`."""
    samples, total = [], 0.0
    for t in _times(start, end, step):
        samples.append((t, total))
        total += _rate_at(per_s, t) * step
    return {labels(name, **(ls or {})): samples + ([(end + step, STALE)] if stale else [])}


def gauge(
    name: str,
    ls: Mapping[str, str] | None = None,
    *,
    value: Rate,
    start: float,
    end: float = NOON,
    step: float = SCRAPE_S,
    stale: bool = False,
) -> SeriesSet:
    samples = [(t, _rate_at(value, t)) for t in _times(start, end, step)]
    return {labels(name, **(ls or {})): samples + ([(end + step, STALE)] if stale else [])}


def histogram(
    name: str,
    ls: Mapping[str, str] | None = None,
    *,
    buckets: tuple[float, ...],
    per_s: Mapping[float, Rate],
    start: float,
    end: float = NOON,
    step: float = SCRAPE_S,
) -> SeriesSet:
    """A classic histogram: `per_s` maps a bucket's upper bound to the observations per second that
    land in that bucket (at the bound itself, so `_sum` is an upper estimate)."""
    assert set(per_s) <= set(buckets), f"observations must land on a finite bucket bound: {set(per_s) - set(buckets)}"
    series: SeriesSet = {}
    for le in (*sorted(buckets), math.inf):
        below = {bound: rate for bound, rate in per_s.items() if bound <= le}
        bucket_labels = {**(ls or {}), "le": _format_le(le)}
        series |= counter(f"{name}_bucket", bucket_labels, per_s=_total(below), start=start, end=end, step=step)
    series |= counter(f"{name}_count", ls, per_s=_total(per_s), start=start, end=end, step=step)
    series |= counter(f"{name}_sum", ls, per_s=_total(per_s, weighted=True), start=start, end=end, step=step)
    return series


def _total(rates: Mapping[float, Rate], *, weighted: bool = False) -> Callable[[float], float]:
    """The observations per second of several buckets together (weighted by their bound: the sum)."""

    def at(t: float) -> float:
        return sum((bound if weighted else 1.0) * _rate_at(rate, t) for bound, rate in rates.items())

    return at


def _format_le(le: float) -> str:
    """As prometheus_client and the SDK write a bound: `0.1`, `1.0` or `1`, `+Inf`."""
    return "+Inf" if le == math.inf else repr(le)


def merged(*sets: SeriesSet) -> SeriesSet:
    out: SeriesSet = {}
    for one in sets:
        overlap = out.keys() & one.keys()
        assert not overlap, f"two series with the same labels: {overlap}"
        out |= one
    return out
