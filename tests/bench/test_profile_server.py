"""Splitting py-spy's collapsed stacks into shares: malformed lines skipped, shares exact."""

from __future__ import annotations

import pytest

from bench.profile_server import stacks, stage_shares, top_leaves

COLLAPSED = "main;a;leaf_x 3\nmain;leaf_y 1\nnot a sample line\n;  \n"


def test_stacks_skip_lines_without_a_sample_count() -> None:
    """Guards against a malformed line shifting every share."""
    assert list(stacks(COLLAPSED)) == [("main;a;leaf_x", 3), ("main;leaf_y", 1)]


def test_top_leaves_are_shares_of_all_samples() -> None:
    assert top_leaves(COLLAPSED) == [("leaf_x", 0.75), ("leaf_y", 0.25)]


def test_stage_shares_sum_to_one() -> None:
    shares = dict(stage_shares(COLLAPSED))
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["other"] == pytest.approx(1.0)
