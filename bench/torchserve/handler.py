"""TorchServe handler for the forecaster's `model.ts`: the contender a PyTorch user would pick.

It speaks the service's JSON (`POST /predictions/forecaster` with the body of our
`POST /forecast`) and answers the same shape, so the benchmark sends both the same bytes
and checks both answers with the same rule. Every request TorchServe's batcher hands
over goes into one right-padded forward pass (the model packs inside), which is what a
straightforward handler does: no length bucketing.

Self-contained (torch, numpy, the standard library) because it travels inside the .mar.
`FORECASTER_TS_STATS=<file>` makes it keep `calls series` counters there, so the
benchmark can report series per model call as it does for our service.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch

# ids, histories cut to max_history, lengths received, horizon, quantiles
Parsed = tuple[list[str], list[list[float]], list[int], int, list[float]]


class ForecastError(ValueError):
    """A request the handler refuses (answered 422 with this message)."""


class Forecaster:
    """Loaded model plus what metadata.json says about it."""

    def __init__(self, model_dir: str) -> None:
        with open(os.path.join(model_dir, "metadata.json")) as f:
            self.metadata: dict[str, Any] = json.load(f)
        torch.set_num_threads(int(os.environ.get("FORECASTER_TORCH_THREADS", "1")))
        path = os.path.join(model_dir, self.metadata.get("model_file", "model.ts"))
        self.model = torch.jit.load(path, map_location="cpu").eval()
        self.horizon = int(self.metadata["horizon"])
        self.quantiles = [float(q) for q in self.metadata["quantiles"]]
        self.point_index = int(self.metadata["point_quantile_index"])
        self.min_history = int(self.metadata["min_history"])
        self.max_history = int(self.metadata["max_history"])
        self.model_ref = {"name": self.metadata["name"], "version": self.metadata["version"]}
        self.calls = 0
        self.series = 0
        stats = os.environ.get("FORECASTER_TS_STATS")
        self.stats_fd = os.open(stats, os.O_WRONLY | os.O_CREAT, 0o644) if stats else None

    def parse(self, body: Any) -> Parsed:
        """ids, histories (cut to max_history), lengths received, horizon, quantiles."""
        if isinstance(body, bytes | bytearray):
            try:
                body = json.loads(body)
            except ValueError as exc:
                raise ForecastError(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("series"), list):
            raise ForecastError("body must be an object with a 'series' list")
        if not body["series"]:
            raise ForecastError("series must not be empty")
        ids: list[str] = []
        histories: list[list[float]] = []
        received: list[int] = []
        for i, item in enumerate(body["series"]):
            values = item.get("values") if isinstance(item, dict) else None
            if not isinstance(values, list) or len(values) < self.min_history:
                raise ForecastError(f"series[{i}].values needs at least {self.min_history} numbers")
            if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
                raise ForecastError(f"series[{i}].values must be finite numbers")
            ids.append(str(item.get("id", i)))
            histories.append(values[-self.max_history :])
            received.append(len(values))
        horizon = body.get("horizon") or self.horizon
        if not isinstance(horizon, int) or not 1 <= horizon <= self.horizon:
            raise ForecastError(f"horizon must be between 1 and {self.horizon}")
        quantiles = body.get("quantiles") or self.quantiles
        if not all(q in self.quantiles for q in quantiles):
            raise ForecastError(f"quantiles must be among {self.quantiles}")
        return ids, histories, received, horizon, quantiles

    def forecast(self, histories: list[list[float]]) -> np.ndarray:
        """One padded forward pass over every history: (N, horizon, Q)."""
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64)  # (N,)
        values = np.zeros((len(histories), int(lengths.max())), dtype=np.float32)  # (N, T)
        for i, h in enumerate(histories):
            values[i, : len(h)] = h
        with torch.inference_mode():
            out = self.model(torch.from_numpy(values), torch.from_numpy(lengths))  # (N, H, Q)
        self.calls += 1
        self.series += len(histories)
        if self.stats_fd is not None:
            os.pwrite(self.stats_fd, f"{self.calls:>20} {self.series:>20}\n".encode(), 0)
        return out.numpy()

    def answer(self, request: Parsed, rows: np.ndarray) -> bytes:
        """The service's response body for one request; rows: (n, H, Q)."""
        ids, histories, received, horizon, qs = request
        q_index = [self.quantiles.index(q) for q in qs]
        forecasts = [
            {
                "id": ids[i],
                "point": rows[i, :horizon, self.point_index].tolist(),
                "quantiles": {
                    str(q): rows[i, :horizon, j].tolist() for q, j in zip(qs, q_index, strict=True)
                },
                "history_used": len(histories[i]),
                "truncated": received[i] > len(histories[i]),
            }
            for i in range(len(ids))
        ]
        body = {"model": self.model_ref, "horizon": horizon, "quantiles": qs}
        body["forecasts"] = forecasts
        return json.dumps(body, separators=(",", ":")).encode()

    def handle_batch(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """Answer every request of one TorchServe batch, in order, from one forward pass."""
        parsed: list[tuple[int, Parsed]] = []
        replies: list[bytes] = [b""] * len(data)
        for idx, request in enumerate(data):
            body = request.get("body") if request.get("body") is not None else request.get("data")
            try:
                parsed.append((idx, self.parse(body)))
            except ForecastError as exc:
                context.set_response_status(422, "Unprocessable Entity", idx)
                error = {"error": "validation_error", "message": str(exc)}
                replies[idx] = json.dumps(error).encode()
        if parsed:
            flat = [h for _, request in parsed for h in request[1]]
            out = self.forecast(flat)  # (N, H, Q)
            start = 0
            for idx, request in parsed:
                count = len(request[0])
                replies[idx] = self.answer(request, out[start : start + count])
                start += count
        return replies


_forecaster: Forecaster | None = None


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[bytes] | None:
    """TorchServe's entry point: called with `data=None` once to initialise, then per batch."""
    global _forecaster
    if _forecaster is None:
        _forecaster = Forecaster(context.system_properties.get("model_dir"))
    if data is None:
        return None
    return _forecaster.handle_batch(data, context)
