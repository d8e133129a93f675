"""The shipped Prometheus config and alert rules: promtool's checks, then a real Prometheus.

The live test runs the `prometheus` binary (Debian package `prometheus`, installed by
deploy/install-prometheus.sh) on 127.0.0.1 with the shipped config, its target replaced
by a running service, and reads our series back through Prometheus' HTTP query API.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.metrics import sample, scrape
from bench.servers import Server, free_port
from tests.deploy.conftest import (
    ALERT_RULES,
    ALERT_TESTS,
    PROMETHEUS_CONFIG,
    alert_rules,
    dashboard,
    dashboard_exprs,
    forecast,
    load_yaml,
)
from tests.service.tiny_model import NAME, VERSION

INSTALL_HINT = "run deploy/install-prometheus.sh (Debian package `prometheus`)"
JOB = "forecaster"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not on PATH; {INSTALL_HINT}")
    return found


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_config_and_its_rule_files() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_symptom_and_only_then() -> None:
    """promtool's rule unit tests (alerts.test.yml): firing and quiet cases for each alert."""
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_required_alerts_exist_with_severity_and_text() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    wanted = {
        "ForecasterHighErrorRatio",
        "ForecasterHighP99Latency",
        "ForecasterOverloaded",  # 503 rate
        "ForecasterModelNotReady",
        "ForecasterHighPaddingRatio",
    }
    assert wanted <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_the_scrape_job_is_the_one_the_rules_expect() -> None:
    (job,) = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
    assert (job["job_name"], job["metrics_path"]) == (JOB, "/metrics")
    assert all(f'job="{JOB}"' in rule["expr"] for rule in alert_rules() if "up{" in rule["expr"])


def config_for(target: str, directory: Path) -> Path:
    """The shipped config with only its target replaced (and scrapes every second)."""
    config = load_yaml(PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERT_RULES)]
    (job,) = config["scrape_configs"]
    job["scrape_timeout"] = "1s"
    job["static_configs"] = [{"targets": [target]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    """`prometheus` on a free 127.0.0.1 port; its API, and stopped by its process group."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "prometheus.log"
        command = [
            binary("prometheus"),
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.path={directory / 'data'}",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        until(lambda: self.get("/-/ready").status_code == 200, timeout_s, self.tail)

    def get(self, path: str, **params: str) -> httpx.Response:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited {self.process.returncode}:\n{self.tail()}")
        return httpx.get(f"{self.url}{path}", params=params, timeout=5)

    def api(self, path: str, **params: str) -> Any:
        body = self.get(f"/api/v1/{path}", **params).json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, promql: str) -> float | None:
        """The single sample `promql` returns now, or None when it returns nothing."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def until(condition: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if condition():
                return
        time.sleep(0.5)
    raise TimeoutError(f"not within {timeout_s} s:\n{why()}")


@pytest.fixture
def prometheus(deploy_server: Server, tmp_path: Path) -> Iterator[Prometheus]:
    target = deploy_server.url.removeprefix("http://")
    running = Prometheus(config_for(target, tmp_path), tmp_path)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def scraped(server: Server, name: str, labels: str = "") -> float:
    """A sample straight from the service's /metrics, summed over the labels not asked
    for (0 when absent)."""
    return sample(scrape(server), name, labels)


@pytest.mark.slow
def test_prometheus_scrapes_our_series_and_evaluates_the_rules(
    deploy_server: Server, prometheus: Prometheus
) -> None:
    """Guards against a config, metric name or label that only breaks in a real Prometheus."""
    mine = f'{{model="{NAME}"}}'
    series_before = scraped(deploy_server, "forecaster_forecast_series_total", mine)
    lengths_before = scraped(deploy_server, "forecaster_history_length_points_count", mine)
    ok_before = scraped(deploy_server, "forecaster_requests_total", '{code="200"}')
    sizes = (1, 4, 2, 7, 3)
    for n in sizes:
        response = forecast(deploy_server, n)
        assert response.status_code == 200, response.text
    expected = series_before + sum(sizes)

    selector = f'{{job="{JOB}", model="{NAME}"}}'
    until(
        lambda: prometheus.value(f"forecaster_forecast_series_total{selector}") == expected,
        30,
        lambda: f"{prometheus.query('forecaster_forecast_series_total')}\n{prometheus.tail()}",
    )
    assert prometheus.value(f'up{{job="{JOB}"}}') == 1
    # Histograms: one observation of the history length per series, over every pass.
    lengths = lengths_before + sum(sizes)
    assert prometheus.value(f"forecaster_history_length_points_count{selector}") == lengths
    assert prometheus.value('forecaster_history_length_points_bucket{le="+Inf"}') == lengths
    # Every series went through exactly one forward pass (warm-up passes are not recorded).
    assert prometheus.value("sum(forecaster_model_call_series_sum)") == expected
    (info,) = prometheus.query(f'forecaster_model_info{{job="{JOB}"}}')
    assert info["metric"] == {
        "__name__": "forecaster_model_info",
        "job": JOB,
        "instance": deploy_server.url.removeprefix("http://"),
        "model": NAME,
        "version": VERSION,
    }
    assert info["value"][1] == "1"
    ok = prometheus.query('sum(forecaster_requests_total{code="200"})')
    assert float(ok[0]["value"][1]) == ok_before + len(sizes)

    # Every rule evaluates without error on the real series, and none fires on a healthy
    # replica (ForecasterModelNotReady matches forecaster_model_info's real labels).
    def rules_evaluated() -> bool:
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == len(alert_rules())
        assert all(rule["health"] != "err" for rule in rules), rules
        return all(rule["health"] == "ok" for rule in rules)

    until(rules_evaluated, 15, prometheus.tail)
    # An evaluation before the first scrape sets ForecasterNoReplicaUp pending; the next
    # one clears it. A rule that matches a healthy replica would stay pending.
    until(
        lambda: prometheus.api("alerts")["alerts"] == [],
        15,
        lambda: str(prometheus.api("alerts")["alerts"]),
    )

    # Every dashboard query is valid PromQL for this Prometheus, with the model selector
    # on the served model as Grafana would send it; the selector offers that model.
    def as_sent(expr: str, model: str = NAME) -> str:
        return expr.replace("$__rate_interval", "1m").replace("$model", model)

    for expr in dashboard_exprs():
        prometheus.api("query", query=as_sent(expr))
    (variable,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "model"]
    values_of = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"])
    assert values_of, variable["query"]
    metric, label = values_of.groups()
    assert prometheus.api(f"label/{label}/values", **{"match[]": metric}) == [NAME]
    (versions,) = [expr for expr in dashboard_exprs() if "forecaster_model_info" in expr]
    (version_row,) = prometheus.query(as_sent(versions))
    assert version_row["metric"] == {"model": NAME, "version": VERSION}
    assert prometheus.query(as_sent(versions, model="other")) == []
