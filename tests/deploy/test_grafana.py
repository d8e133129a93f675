"""The Grafana dashboard: importable, on a chosen Prometheus, with the panels the SRE needs."""

from __future__ import annotations

from tests.deploy.conftest import dashboard

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


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
        "Model version (replicas per version)": ["forecaster_model_info", "version"],
        "503 (overloaded) rate": ['code="503"'],
    }
    for title, fragments in wanted.items():
        assert title in by_title, f"no panel {title!r}"
        for fragment in fragments:
            assert fragment in by_title[title], (title, fragment)
