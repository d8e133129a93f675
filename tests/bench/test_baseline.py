"""`--baseline REF`: ours at a git ref, from a temporary worktree, against ours as it is now."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.benchmark import (
    baseline_floor,
    baseline_markdown,
    compare_baseline,
    git_worktree,
    parse_args,
    ratios,
    starters,
)
from bench.servers import ROOT


def git(repo: Path, *command: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository of two commits: (path, first commit, second commit)."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    ident = ("-c", "user.name=t", "-c", "user.email=t@t")
    (path / "service.py").write_text("old\n")
    git(path, "add", "service.py")
    git(path, *ident, "commit", "-q", "-m", "old")
    first = git(path, "rev-parse", "HEAD")
    (path / "service.py").write_text("new\n")
    git(path, *ident, "commit", "-q", "-am", "new")
    return path, first, git(path, "rev-parse", "HEAD")


def worktrees(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def test_the_worktree_holds_the_ref_detached_and_is_removed_after(
    repo: tuple[Path, str, str],
) -> None:
    """Guards against serving the current code under the baseline's name, and against
    worktrees (and git's records of them) piling up run after run."""
    path, first, second = repo
    with git_worktree(first[:7], repo=path) as (tree, commit):
        assert commit == first
        assert (tree / "service.py").read_text() == "old\n"
        assert git(tree, "rev-parse", "HEAD") == first
        detached = subprocess.run(["git", "-C", str(tree), "symbolic-ref", "-q", "HEAD"])
        assert detached.returncode == 1  # no branch checked out: nothing to clean up
        assert str(tree) in worktrees(path)
    assert not tree.exists() and not tree.parent.exists()
    assert worktrees(path) == [str(path)]
    assert git(path, "rev-parse", "HEAD") == second  # the main tree is left alone
    assert (path / "service.py").read_text() == "new\n"


def test_the_worktree_is_removed_when_the_run_fails(repo: tuple[Path, str, str]) -> None:
    """Guards against a failed benchmark leaving a worktree behind."""
    path, first, _ = repo
    with (
        pytest.raises(RuntimeError, match="server died"),
        git_worktree(first, repo=path) as (
            tree,
            _,
        ),
    ):
        raise RuntimeError("server died")
    assert not tree.parent.exists()
    assert worktrees(path) == [str(path)]


def test_an_unknown_ref_is_refused_before_any_worktree(repo: tuple[Path, str, str]) -> None:
    path, _, _ = repo
    with pytest.raises(subprocess.CalledProcessError), git_worktree("nope", repo=path):
        pass
    assert worktrees(path) == [str(path)]


def test_the_baseline_names_the_model_both_ways_and_runs_from_its_tree(tmp_path: Path) -> None:
    """Guards against a baseline that cannot find the model (the code before the
    repository reads FORECASTER_MODEL only) and against current code posing as it."""
    model = ROOT / "models" / "m3-monthly"
    tree = tmp_path / "tree"
    args = parse_args(["--contenders", "ours", "--baseline", "8e41dfe", "--repository", "models"])
    chosen = starters(args, model, tmp_path / "logs", tree)
    assert list(chosen) == ["ours", "ours@8e41dfe"]
    base, ours = chosen["ours@8e41dfe"](), chosen["ours"]()
    assert base.cwd == tree and base.name == "ours@8e41dfe"
    assert base.env["FORECASTER_MODEL"] == str(model)
    assert base.env["FORECASTER_MODELS"] == str(model)
    assert ours.cwd == ROOT
    assert ours.env["FORECASTER_MODELS"] == str(ROOT / "models")
    assert ours.env["FORECASTER_DEFAULT_MODEL"] == "m3-monthly"
    assert base.env["BENTOML_HOME"] != ours.env["BENTOML_HOME"]


def test_without_a_repository_ours_serves_the_model_alone(tmp_path: Path) -> None:
    model = ROOT / "models" / "m3-monthly"
    chosen = starters(parse_args(["--contenders", "ours,nobatch"]), model, tmp_path)
    assert list(chosen) == ["ours", "nobatch"]
    assert chosen["ours"]().env["FORECASTER_MODELS"] == str(model)
    assert "FORECASTER_DEFAULT_MODEL" not in chosen["nobatch"]().env


def test_a_model_outside_the_repository_is_refused(tmp_path: Path) -> None:
    """Guards against measuring a repository whose default is not the benchmarked model."""
    args = parse_args(["--repository", str(tmp_path)])
    with pytest.raises(SystemExit, match="is not a model of --repository"):
        starters(args, ROOT / "models" / "m3-monthly", tmp_path)


def point(users: int, rps: float, cpu: float, windows: list[float], spr: int = 1) -> dict[str, Any]:
    return {
        "users": users,
        "series_per_request": spr,
        "requests_per_s": rps,
        "cpu_ms_per_series": cpu,
        "rep_requests_per_s": windows,
        "p99_ms": 20.0,
        "errors": 0,
    }


def run_result(ours_rps: float, base_rps: float) -> dict[str, Any]:
    return {
        "config": {
            "baseline": {
                "name": "ours@abc1234",
                "ref": "abc1234",
                "commit": "abc1234" + "0" * 33,
                "env": {"FORECASTER_MODEL": "m", "FORECASTER_MODELS": "m"},
                "ours_env": {"FORECASTER_MODELS": "models"},
            }
        },
        "contenders": {
            "ours": {
                "single": [point(32, ours_rps, 0.5, [ours_rps, 1900.0, 2100.0])],
                "bulk": point(4, 40.0, 0.3, [40.0], spr=64),
                "error": None,
            },
            "ours@abc1234": {
                "single": [point(32, base_rps, 0.4, [base_rps, 1950.0, 2050.0])],
                "bulk": point(4, 50.0, 0.25, [50.0], spr=64),
                "error": None,
            },
        },
    }


def test_ratios_per_point_and_the_table_row() -> None:
    data = run_result(1900.0, 2000.0)
    data["baseline"] = compare_baseline(data)
    rows = data["baseline"]["ratios"]
    assert [(r["users"], r["series_per_request"]) for r in rows] == [(32, 1), (4, 64)]
    assert rows[0]["requests_per_s_ratio"] == pytest.approx(0.95)
    assert rows[0]["cpu_ms_per_series_ratio"] == pytest.approx(1.25)
    assert rows[1]["requests_per_s_ratio"] == pytest.approx(0.8)
    text = baseline_markdown(data)
    assert (
        "| 32 users | 1,900.0 | 2,000.0 | 0.950 | 1,900, 1,900, 2,100 | 2,000, 1,950, 2,050 "
        "| 0.500 | 0.400 | 1.250 | 20.0 / 20.0 | 0 / 0 |"
    ) in text
    assert "| 4 users × 64 series | 40.0 | 50.0 | 0.800 |" in text
    assert "`FORECASTER_MODEL=m`, `FORECASTER_MODELS=m`" in text


def test_the_floor_is_five_percent_of_the_baseline_at_32_users() -> None:
    """Guards against a slowdown of more than 5 % passing (or 5 % exactly failing)."""
    passing = ratios(*run_result(1900.0, 2000.0)["contenders"].values())
    failing = ratios(*run_result(1899.0, 2000.0)["contenders"].values())
    assert baseline_floor(passing, "ours@abc1234") == {
        "floor": "req/s at 32 users, ours / ours@abc1234",
        "measured": pytest.approx(0.95),
        "needed": ">= 0.95",
        "passed": True,
    }
    assert baseline_floor(failing, "ours@abc1234")["passed"] is False


def test_a_baseline_that_did_not_run_is_said_not_compared() -> None:
    data = run_result(1.0, 1.0)
    data["contenders"]["ours@abc1234"] = {"single": [], "bulk": None, "error": "exited 1"}
    data["baseline"] = compare_baseline(data)
    assert data["baseline"] == {"error": "did not run: ours@abc1234: exited 1"}
    assert "Not compared: did not run: ours@abc1234: exited 1" in baseline_markdown(data)


def test_points_that_differ_are_not_compared() -> None:
    ours, base = run_result(1.0, 1.0)["contenders"].values()
    base["single"][0]["users"] = 64
    with pytest.raises(ValueError, match="points differ: 32 users vs 64"):
        ratios(ours, base)
