"""A real scrape of a /metrics endpoint, parsed as Prometheus would read it."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: dict[tuple[str, Labels], float]
    types: dict[str, str]  # family name -> type

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when it is absent (a counter not yet incremented)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def label_values(self) -> set[str]:
        return {value for _, labels in self.samples for _, value in labels}


async def scrape(url: str) -> Scrape:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: dict[tuple[str, Labels], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(response.text, samples, types)
