"""How the benchmark measures: each of our paths beside its ceiling, alternating, so that whatever
else the shared machine does touches both alike (measured one after the other, a ratio moved by
up to 1.4x between two runs of the same code).

- `interleaved`: sequential calls, one of each path per round, for latency.
- `alternating`: chunks of concurrent calls, one path's chunk then the other's, for throughput.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from incentives.domain.errors import Rejected

Call = Callable[[int], Awaitable[object]]


@dataclass
class Figure:
    name: str
    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    failures: int = 0

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.latencies) * 1000 if self.latencies else None

    @property
    def p99_ms(self) -> float | None:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "count": self.count,
            "seconds": self.seconds,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "per_second": self.per_second,
            "failures": self.failures,
        }


async def interleaved(rounds: int, paths: dict[str, Call]) -> dict[str, Figure]:
    """Each round calls every path once, in turn; each figure's seconds are its own calls' sum."""
    figures = {name: Figure(name) for name in paths}
    for i in range(rounds):
        for name, call in paths.items():
            t0 = time.perf_counter()
            await call(i)
            elapsed = time.perf_counter() - t0
            figure = figures[name]
            figure.count += 1
            figure.seconds += elapsed
            figure.latencies.append(elapsed)
    return figures


async def concurrently(figure: Figure, calls: Sequence[Call], start: int, in_flight: int) -> None:
    """Runs `calls[k](start + k)` with at most `in_flight` at once; a `Rejected` is an answer, not a failure."""
    gate = asyncio.Semaphore(in_flight)

    async def one(k: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            try:
                await calls[k](start + k)
            except Rejected:
                pass
            except Exception:
                figure.failures += 1
            figure.latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(len(calls))))
    figure.seconds += time.perf_counter() - started
    figure.count += len(calls)


async def alternating(
    count: int, chunk: int, in_flight: int, ours: tuple[str, Call], ceiling: tuple[str, Call]
) -> tuple[Figure, Figure]:
    """`count` calls of each path, `in_flight` at a time, in chunks: a chunk of the ceiling, then one of ours."""
    figures = Figure(ours[0]), Figure(ceiling[0])
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        await concurrently(figures[1], [ceiling[1]] * size, start, in_flight)
        await concurrently(figures[0], [ours[1]] * size, start, in_flight)
    return figures
