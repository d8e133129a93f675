"""The Grafana dashboard: importable, on a chosen Prometheus, with the panels the SRE needs."""

from __future__ import annotations

import re

from tests.deploy.conftest import (
    dashboard,
    dashboard_targets,
    family_of,
    model_labelled_families,
    selectors,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MODEL_FILTER = ("model", "=~", "$model")
# Panels that compare the served models: one line per model.
BY_MODEL = {
    "Throughput",
    "Latency of POST /forecast",
    "Series per model call (batch size)",
    "Model versions (replicas per model and version)",
}
# An aggregation and the labels it keeps (`sum(` keeps none).
_AGGREGATION = re.compile(r"\b(?:sum|count|avg|min|max)\s*(?:by\s*\(([^)]*)\))?\s*\(")


def test_dashboard_uses_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    for panel in board["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_the_required_panels_are_there() -> None:
    """Throughput, latency percentiles, batch size, padding, queue vs compute, rejections,
    model version, 503s: each a panel, found by the metric its queries use."""
    by_title = {
        p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard()["panels"]
    }
    wanted = {
        "Throughput": ["forecaster_requests_total", "forecaster_forecast_series_total"],
        "Latency of POST /forecast": [
            "histogram_quantile(0.5,",
            "histogram_quantile(0.95,",
            "histogram_quantile(0.99,",
        ],
        "Series per model call (batch size)": ["forecaster_model_call_series"],
        "Padding ratio": ["forecaster_model_call_padding_ratio"],
        "Queue wait vs compute": [
            "forecaster_queue_wait_seconds",
            "forecaster_model_compute_seconds",
        ],
        "Rejections by reason": ["by (reason)", "forecaster_rejections_total"],
        "Model versions (replicas per model and version)": [
            "count by (model, version) (forecaster_model_info",
        ],
        "503 (overloaded) rate": ['code="503"'],
    }
    for title, fragments in wanted.items():
        assert title in by_title, f"no panel {title!r}"
        for fragment in fragments:
            assert fragment in by_title[title], (title, fragment)


def test_the_model_variable_offers_every_served_model() -> None:
    """Guards against a model selector listing nothing (a query on the old `name` label) or
    allowing one model only, and against All leaving out requests with model="" (refused
    before their model was known), which Grafana's default All, the listed names, would."""
    board = dashboard()
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "model"]
    assert variable["type"] == "query"
    assert variable["datasource"] == DATASOURCE
    assert variable["query"] == "label_values(forecaster_model_info, model)"
    assert (variable["multi"], variable["includeAll"], variable.get("allValue")) == (
        True,
        True,
        ".*",
    )


def test_selectors_are_read_from_expressions() -> None:
    expr = (
        'sum(rate(forecaster_requests_total{model=~"$model", code="503"}[5m]))'
        ' / sum(rate(forecaster_requests_total[5m])) + on() bentoml_x{service_name="forecaster_y"}'
    )
    assert selectors(expr) == [
        ("forecaster_requests_total", {MODEL_FILTER, ("code", "=", "503")}),
        ("forecaster_requests_total", set()),
        ("bentoml_x", {("service_name", "=", "forecaster_y")}),
    ]


def test_every_query_on_a_model_labelled_metric_filters_on_the_chosen_models() -> None:
    """Guards against a panel forgotten by the model selector: it would show every model
    mixed whatever is chosen (and, the other way, against a `$model` filter on a metric
    without the label, which matches nothing). Which metrics carry `model` is read from
    service/metrics.py, so a metric that gains the label is checked here too."""
    families = model_labelled_families()
    assert "forecaster_requests" in families and "forecaster_model_info" in families
    checked = 0
    for title, target in dashboard_targets():
        for name, matchers in selectors(target["expr"]):
            if family_of(name, families) is None:
                assert all(m[2] != "$model" for m in matchers), (title, name)
            else:
                assert MODEL_FILTER in matchers, f"{title}: {name} is not filtered on $model"
                checked += 1
    assert checked >= 20


def test_panels_comparing_models_draw_one_line_per_model() -> None:
    """Guards against request rate, latency, series/s or batch size summed over the models
    (a slow model's latency averaged away by a fast one's traffic), against one side of a
    ratio grouped differently (it returns nothing), and against a legend without
    `{{model}}` (lines that cannot be told apart)."""
    titles = {p["title"] for p in dashboard()["panels"]}
    assert BY_MODEL - titles == set(), f"no panel {sorted(BY_MODEL - titles)}"
    for title, target in dashboard_targets():
        groupings = [
            {label.strip() for label in by.split(",")}
            for by in _AGGREGATION.findall(target["expr"])
        ]
        if title in BY_MODEL:
            assert groupings and all("model" in g for g in groupings), (title, target["expr"])
        if any("model" in g for g in groupings):
            assert "{{model}}" in target["legendFormat"], (title, target["legendFormat"])
