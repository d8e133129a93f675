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

from bench.metrics import samples, scrape
from bench.servers import ROOT, Server
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


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERT_RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The `forecaster_*` and `bentoml_*` series names a PromQL expression selects."""
    return set(_OUR_METRIC.findall(_QUOTED.sub('""', expr)))


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
    env = {"FORECASTER_MODEL": str(tiny), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
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
