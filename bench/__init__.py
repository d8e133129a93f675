"""Benchmarks and the tools behind them, one module per job; the tests import them too.

- `servers`: the one server launcher (`Server` is `bentoml serve`, `TorchServe`), `free_port`;
- `loadgen`: the one closed-loop HTTP load client;
- `metrics`: the one reader of a Prometheus `/metrics` page;
- `benchmark` (`python -m bench`, `make bench`): every contender side by side;
  `report`: its tables, floors and plot; `limit`: the in-process limit; `torchserve/`:
  the TorchServe contender's handler and configuration;
- `soak` (`make soak`): minutes of mixed load, leaks shown as trends;
- `profile_server` (py-spy), `asgi_layers`, `memory_probe`: profilers;
- `standin`: an untrained model of the real architecture for smoke runs and tests.

Locust (`make load`) lives in `load_tests/`, with the payloads every client sends.
"""
