"""Alert rules and dashboard queries select only series the service really exposes."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import (
    alert_rules,
    dashboard_exprs,
    exposed_series,
    metric_names,
    model_labelled_families,
)
from tests.service.tiny_model import NAME, VERSION

pytestmark = pytest.mark.slow


def test_metric_names_are_read_from_expressions() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le) (rate("
        'bentoml_service_request_duration_seconds_bucket{service_name="forecaster_x"}[5m])))'
        " / forecaster_model_info"
    )
    assert metric_names(expr) == {
        "bentoml_service_request_duration_seconds_bucket",
        "forecaster_model_info",
    }


@pytest.mark.parametrize(
    ("source", "exprs"),
    [
        ("deploy/prometheus/alerts.yml", [rule["expr"] for rule in alert_rules()]),
        ("deploy/grafana/forecaster-dashboard.json", dashboard_exprs()),
    ],
)
def test_every_series_referenced_is_exposed(
    source: str, exprs: list[str], live_metrics: str
) -> None:
    """Guards against an alert or panel on a misspelt or renamed metric: it stays silent.

    Names are compared as exposed samples, so a histogram is used through its `_bucket`,
    `_sum` or `_count` series and a counter through `_total`.
    """
    exposed = exposed_series(live_metrics)
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used, f"{source} references none of our metrics"
    assert used <= exposed, (
        f"{source} uses series the service does not expose: {sorted(used - exposed)}"
    )


def test_the_dashboard_shows_every_forecaster_metric(live_metrics: str) -> None:
    """A metric added to service/metrics.py without a panel is one nobody looks at."""
    families = {
        line.split()[2]
        for line in live_metrics.splitlines()
        if line.startswith("# TYPE forecaster_")
    }
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    shown = {name for name in families if any(u == name or u.startswith(f"{name}_") for u in used)}
    assert families - shown == set(), f"no panel for {sorted(families - shown)}"


def test_the_metrics_read_as_model_labelled_are_those_served_with_the_label(
    live_metrics: str,
) -> None:
    """Guards the dashboard's `$model` filter test against reading the wrong metrics as
    model-labelled (it would demand a filter that matches nothing, or miss one), and
    forecaster_model_info against keeping its old `name` label, which the model selector,
    the version panel and the version-skew alert no longer read."""
    ours = [
        family
        for family in text_string_to_metric_families(live_metrics)
        if family.name.startswith("forecaster_")
    ]
    labelled = {
        family.name
        for family in ours
        if family.samples and all("model" in s.labels for s in family.samples)
    }
    assert labelled == model_labelled_families()
    (info,) = [family for family in ours if family.name == "forecaster_model_info"]
    assert [(s.labels, s.value) for s in info.samples] == [({"model": NAME, "version": VERSION}, 1)]
