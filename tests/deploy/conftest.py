"""Fixtures for the deploy tests: the shipped files, and one live service on the tiny model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from bench.metrics import samples, scrape
from bench.servers import ROOT, Server
from service import metrics as service_metrics
from tests.service.tiny_model import MIN_HISTORY, write_tiny_artifact

DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "forecaster-dashboard.json"
K8S = DEPLOY / "k8s"

# Quoted label values first, so `service_name="forecaster"` does not read as a metric name.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_OUR_METRIC = re.compile(r"\b(?:forecaster|bentoml)_[a-zA-Z0-9_:]*")
# A quoted string outside braces is skipped (group 1 empty); inside them it is a value.
_SELECTOR = re.compile(
    r'"(?:[^"\\]|\\.)*"'
    r'|\b((?:forecaster|bentoml)_[a-zA-Z0-9_:]*)\s*(?:\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\})?'
)
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
# The samples a family exposes: a gauge its name, a counter `_total`, a histogram `_bucket`,
# `_sum`, `_count`; both of those `_created`.
_SAMPLE_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERT_RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every query of the dashboard."""
    return [
        (panel["title"], t) for panel in dashboard()["panels"] for t in panel.get("targets", [])
    ]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for _, target in dashboard_targets()]


def metric_names(expr: str) -> set[str]:
    """The `forecaster_*` and `bentoml_*` series names a PromQL expression selects."""
    return set(_OUR_METRIC.findall(_QUOTED.sub('""', expr)))


def selectors(expr: str) -> list[tuple[str, set[tuple[str, str, str]]]]:
    """Each `forecaster_*` / `bentoml_*` series selector of a PromQL expression: its metric
    name and its label matchers as (label, operator, value), `{}` when it has none."""
    return [
        (m[1], set(_MATCHER.findall(m[2] or "")))
        for m in _SELECTOR.finditer(expr)
        if m[1] is not None
    ]


def model_labelled_families() -> set[str]:
    """The metric families of service/metrics.py that carry a `model` label (counters
    without `_total`, as prometheus-client names them)."""
    # prometheus-client has no public accessor for a metric's declared label names.
    return {
        metric._name
        for metric in vars(service_metrics).values()
        if isinstance(metric, MetricWrapperBase) and "model" in metric._labelnames
    }


def family_of(sample_name: str, families: set[str]) -> str | None:
    """The family among `families` whose sample `sample_name` is, else None
    (`forecaster_requests_total` -> `forecaster_requests`, not for `..._in_progress`)."""
    for family in families:
        if any(sample_name == family + suffix for suffix in _SAMPLE_SUFFIXES):
            return family
    return None


def exposed_series(metrics_text: str) -> set[str]:
    """Sample names in a /metrics text (`x_total`, `h_bucket`, `h_sum`, `h_count`, ...)."""
    return {key.split("{", 1)[0] for key in samples(metrics_text)}


def forecast(server: Server, n_series: int, length: int = 12) -> httpx.Response:
    """POST `n_series` series of equal length (so every model call has zero padding)."""
    series = [{"values": [float(10 + i + j) for j in range(length)]} for i in range(n_series)]
    assert length >= MIN_HISTORY
    return httpx.post(f"{server.url}/forecast", json={"series": series}, timeout=30)


@pytest.fixture(scope="session")
def deploy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `bentoml serve` of the tiny model for the deploy tests."""
    tiny = write_tiny_artifact(tmp_path_factory.mktemp("deploy-model") / "tiny")
    home = tmp_path_factory.mktemp("deploy-bentoml-home")
    env = {
        "FORECASTER_MODELS": str(tiny),
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    with Server(env) as running:
        yield running


@pytest.fixture(scope="session")
def live_metrics(deploy_server: Server) -> str:
    """The service's /metrics after forecasts and one rejected request: every series exists."""
    for n in (1, 3, 2):
        response = forecast(deploy_server, n)
        assert response.status_code == 200, response.text
    bad = httpx.post(f"{deploy_server.url}/forecast", content=b"{not json", timeout=30)
    assert bad.status_code == 400, bad.text
    return scrape(deploy_server)
