"""Start-up faults: a broken model or setting stops `bentoml serve` with one line and exit 1.

Also: /readyz does not answer 200 before the model is loaded and warmed up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch

from bench.servers import BENTOML, ROOT, Server, free_port, serve_env
from tests.reliability.common import report

pytestmark = pytest.mark.slow

REFUSAL = "forecaster cannot start: "


def edit_metadata(directory: Path, **changes: object) -> None:
    meta = json.loads((directory / "metadata.json").read_text())
    (directory / "metadata.json").write_text(json.dumps({**meta, **changes}))


def corrupt_model(directory: Path) -> None:
    """Garbage in model.ts, with a matching hash: only loading it can tell."""
    import hashlib

    data = b"PK\x03\x04 this is not a TorchScript archive " * 50
    (directory / "model.ts").write_bytes(data)
    edit_metadata(directory, model_sha256=hashlib.sha256(data).hexdigest())


def tampered_model(directory: Path) -> None:
    (directory / "model.ts").write_bytes((directory / "model.ts").read_bytes()[:-100])


def repository_of_two(directory: Path, second: str = "tiny-2") -> None:
    """Turn a copy of the tiny artifact into a folder of two models, the second renamed."""
    first = directory.with_name(directory.name + "-first")
    directory.rename(first)
    directory.mkdir()
    first.rename(directory / "a")
    shutil.copytree(directory / "a", directory / "b")
    edit_metadata(directory / "b", name=second)


# name -> (how to break a copy of the tiny artifact, extra env, text the one line must hold)
CASES: dict[str, tuple[Callable[[Path], None], dict[str, str], str]] = {
    "missing_directory": (lambda d: shutil.rmtree(d), {}, "not found: no metadata.json in"),
    "missing_model_file": (lambda d: (d / "model.ts").unlink(), {}, "model.ts is missing"),
    "corrupt_model_file": (corrupt_model, {}, "cannot load TorchScript"),
    "truncated_model_file": (tampered_model, {}, "does not match metadata.json's"),
    "wrong_horizon": (
        lambda d: edit_metadata(d, horizon=7),
        {},
        "returns shape (2, 6, 3) for 2 series, but metadata.json (horizon 7, 3 quantiles)",
    ),
    "wrong_quantiles": (
        lambda d: edit_metadata(d, quantiles=[0.05, 0.5, 0.9, 0.95]),
        {},
        "implies (2, 6, 4)",
    ),
    "unknown_schema_version": (
        lambda d: edit_metadata(d, schema_version=2),
        {},
        "schema_version 2 != 1",
    ),
    "bad_setting": (lambda d: None, {"FORECASTER_WORKERS": "0"}, "FORECASTER_WORKERS: Input"),
    "bad_device": (lambda d: None, {"FORECASTER_DEVICE": "tpu"}, "FORECASTER_DEVICE: Input"),
    "unknown_default_model": (
        repository_of_two,
        {"FORECASTER_DEFAULT_MODEL": "m3-monthly"},
        "FORECASTER_DEFAULT_MODEL 'm3-monthly' is not among the models served: ['tiny', 'tiny-2']",
    ),
    "two_models_one_name": (
        lambda d: repository_of_two(d, second="tiny"),
        {},
        "two models are called 'tiny'",
    ),
    "one_broken_model_of_two": (
        lambda d: (repository_of_two(d), tampered_model(d / "b")),
        {"FORECASTER_DEFAULT_MODEL": "tiny"},
        "b/model.ts: sha256",
    ),
}
if not torch.cuda.is_available():  # where there is a GPU this setting is fine
    CASES["cuda_without_gpu"] = (
        lambda d: None,
        {"FORECASTER_DEVICE": "cuda"},
        "FORECASTER_DEVICE=cuda, but torch sees no CUDA device",
    )


def test_broken_model_or_setting_stops_serve_with_one_line_and_exit_1(
    tiny_artifact: Path, bentoml_home: Path, tmp_path: Path
) -> None:
    """Guards against a server that starts on a bad model (or loops restarting workers)."""
    running: dict[str, tuple[subprocess.Popen[str], float]] = {}
    for name, (breaker, extra, _) in CASES.items():
        target = tmp_path / name
        shutil.copytree(tiny_artifact, target)
        breaker(target)
        env = {**os.environ, "FORECASTER_MODELS": str(target), "BENTOML_HOME": str(bentoml_home)}
        command = [str(BENTOML), "serve", "--host", "127.0.0.1", "--port", str(free_port())]
        # All at once: each spends its seconds importing torch.
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        running[name] = (proc, time.monotonic())
    failures = []
    for name, (proc, started) in running.items():
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            failures.append(f"{name}: still running after 120 s")
            continue
        elapsed = time.monotonic() - started
        lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
        refusals = [line for line in lines if line.startswith(REFUSAL)]
        want = CASES[name][2]
        report(
            "startup_fault",
            case=name,
            exit=proc.returncode,
            seconds=round(elapsed, 1),
            output_lines=len(lines),
        )
        print(f"  {refusals[0] if refusals else lines[-1:]}")
        if proc.returncode == 0:
            failures.append(f"{name}: exit status 0")
        if len(refusals) != 1 or want not in refusals[0]:
            failures.append(f"{name}: no one-line reason holding {want!r}: {lines[-5:]}")
        if "Traceback" in stdout + stderr:
            failures.append(f"{name}: printed a traceback")
    assert not failures, "\n".join(failures)


def test_readyz_is_not_200_before_the_model_is_warmed_up(
    tiny_artifact: Path, bentoml_home: Path
) -> None:
    """Guards against a load balancer routing traffic to a worker still warming up."""
    env = {
        **serve_env(
            tiny_artifact,
            bentoml_home,
            warmup_rounds="2000",  # a few seconds of warm-up, to watch
        ),
        "PYTHONUNBUFFERED": "1",
    }
    server = Server(env)
    polls: list[tuple[float, int, bool]] = []  # (time, status or 0, warm-up finished in log)
    command = [str(BENTOML), "serve", "--host", "127.0.0.1", "--port", str(server.port)]
    with server.log.open("wb") as log:
        server.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.process.poll() is None, server.tail()
            try:
                status = httpx.get(f"{server.url}/readyz", timeout=0.5).status_code
            except httpx.HTTPError:
                status = 0
            # Read after the answer: the line is logged before the worker serves anything.
            warmed = "Completed async startup hook: warm_up" in server.tail(100_000)
            polls.append((time.monotonic(), status, warmed))
            if status == 200:
                break
            time.sleep(0.2)
        warming = [p for p in polls if "Running startup hook: warm_up" in server.tail(100_000)]
        early_ok = [p for p in polls if p[1] == 200 and not p[2]]
        report(
            "readyz_before_warm",
            polls=len(polls),
            not_ready_polls=sum(p[1] != 200 for p in polls),
            ready_before_warm=len(early_ok),
        )
        assert polls[-1][1] == 200, server.tail()
        assert warming and not early_ok, polls
        assert sum(p[1] != 200 for p in polls) >= 3, "warm-up too fast to observe"
    finally:
        server.stop()
