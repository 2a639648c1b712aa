"""Reading `/metrics` in tests: one sample's value by name and labels."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels`, summed over any `pid` label (a
    multiprocess gauge); 0 when absent (never incremented yet)."""
    total = 0.0
    for (sample, got), v in samples.items():
        rest = {k: val for k, val in got if k != "pid"}
        if sample == name and rest == labels:
            total += v
    return total


def pids(samples: Samples, name: str) -> set[str]:
    found = (dict(got).get("pid") for (sample, got) in samples if sample == name)
    return {pid for pid in found if pid}
