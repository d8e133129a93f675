"""The one reader of a Prometheus `/metrics` page, for the benchmark, the soak and the tests.

Samples are keyed as the page writes them, `name` or `name{label="value",...}` with the
labels in the page's order. `sample` sums the samples that carry the labels asked for,
whatever their others, so a test can ask for `forecaster_requests_total{code="200"}` (every
model) or `forecaster_requests_total{model="a",code="200"}` (one).
"""

from __future__ import annotations

import re
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families


class HasURL(Protocol):
    url: str


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text page by its key (`name` or `name{a="x",b="y"}`)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels.items())
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def sample(text: str, name: str, labels: str = "") -> float:
    """The sum of the samples called `name` that carry `labels` (written as on the page,
    `'{reason="overloaded"}'`), whatever their other labels; 0 when there are none."""
    wanted = {key: value for key, value in _LABEL.findall(labels)}
    return sum(
        value
        for have, value in labelled(text, name)
        if all(_escape(have.get(key, "")) == want for key, want in wanted.items())
    )


def labelled(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name`, whatever its labels."""
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def total(text: str, name: str) -> float:
    """The sum of every sample called `name` over all its label values; 0 when absent."""
    return sum(value for _, value in labelled(text, name))


def scrape(server: HasURL | str, timeout_s: float = 10.0) -> str:
    """The `/metrics` page of a server (anything with a base `url`, or that base URL)."""
    base = server if isinstance(server, str) else server.url
    return httpx.get(f"{base}/metrics", timeout=timeout_s).text
