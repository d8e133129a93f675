"""Unit tests of the packing batcher: which series land in which pass, padding, order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.batching import SubBatch, collate, flatten, padding_ratio, plan, run_packed, scatter


def rows(batches: list[SubBatch]) -> list[list[int]]:
    return [b.rows.tolist() for b in batches]


def test_plan_sorts_by_length_and_cuts_at_the_padded_cost_budget() -> None:
    """Guards against a budget check on the wrong length (the old max instead of the new one)."""
    lengths = np.array([10, 100, 10, 30, 10])
    batches = plan(lengths, max_padded_cost=90)
    # Shortest first: rows 0, 2, 4 (10 each) cost 3*10; adding row 3 costs 4*30 > 90.
    assert rows(batches) == [[0, 2, 4], [3], [1]]
    assert [b.max_len for b in batches] == [10, 30, 100]
    assert [b.cost for b in batches] == [30, 30, 100]


def test_plan_budget_is_inclusive_and_keeps_equal_lengths_in_arrival_order() -> None:
    """Guards against an unstable sort, which would shuffle equal-length series."""
    lengths = np.array([5, 5, 5, 5])
    assert rows(plan(lengths, max_padded_cost=10)) == [[0, 1], [2, 3]]
    assert rows(plan(lengths, max_padded_cost=20)) == [[0, 1, 2, 3]]


def test_plan_puts_an_over_budget_series_alone() -> None:
    """Guards against an empty sub-batch or a dropped row when one series exceeds the budget."""
    batches = plan(np.array([500, 3]), max_padded_cost=100)
    assert rows(batches) == [[1], [0]]


def test_plan_respects_max_rows() -> None:
    batches = plan(np.array([1, 1, 1, 1, 1]), max_padded_cost=1000, max_rows=2)
    assert rows(batches) == [[0, 1], [2, 3], [4]]


def test_plan_of_nothing_is_nothing() -> None:
    assert plan(np.array([], dtype=np.int64), max_padded_cost=10) == []


def test_collate_right_pads_each_row_with_its_own_values() -> None:
    """Guards against filling the padded matrix column-major (values of one row in another)."""
    series = [np.array([1.0, 2.0, 3.0]), np.array([4.0]), np.array([5.0, 6.0])]
    values, lengths = collate(series)
    assert values.dtype == np.float32 and lengths.dtype == np.int64
    np.testing.assert_array_equal(lengths, [3, 1, 2])
    np.testing.assert_array_equal(values, [[1, 2, 3], [4, 0, 0], [5, 6, 0]])


def test_padding_ratio_counts_padded_cells() -> None:
    lengths = np.array([3, 1, 2])
    batch = SubBatch(np.array([1, 2, 0]), max_len=3)
    assert padding_ratio(batch, lengths) == pytest.approx(1 - 6 / 9)


def test_scatter_returns_rows_to_their_request_in_request_order() -> None:
    """Guards against answering a request with rows of another (the worst bug we can have)."""
    # Three requests with 2, 1 and 2 series: flat rows 0..4.
    _, bounds = flatten([[np.zeros(1)] * 2, [np.zeros(1)], [np.zeros(1)] * 2])
    np.testing.assert_array_equal(bounds, [0, 2, 3, 5])
    out_a = np.array([[[4.0]], [[1.0]]])  # rows 4, 1
    out_b = np.array([[[0.0]], [[3.0]], [[2.0]]])  # rows 0, 3, 2
    answers = scatter(
        [(SubBatch(np.array([4, 1]), 1), out_a), (SubBatch(np.array([0, 3, 2]), 1), out_b)], bounds
    )
    assert [[float(x[0, 0]) for x in a] for a in answers] == [[0.0, 1.0], [2.0], [3.0, 4.0]]


def test_scatter_refuses_a_missing_row() -> None:
    """Guards against silently answering with uninitialised memory for a lost row."""
    _, bounds = flatten([[np.zeros(1)] * 2])
    with pytest.raises(AssertionError, match="not produced"):
        scatter([(SubBatch(np.array([0]), 1), np.zeros((1, 1, 1)))], bounds)


def fingerprint_model(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A row-wise 'model': (B, T), (B,) -> (B, 2, 2) of [sum, length, last, first]."""
    idx = np.arange(len(lengths))
    observed = np.arange(values.shape[1])[None, :] < lengths[:, None]
    total = (values * observed).sum(axis=1)
    last = values[idx, lengths - 1]
    first = values[:, 0]
    return np.stack([total, lengths.astype(np.float32), last, first], axis=1).reshape(-1, 2, 2)


def expected_fingerprint(series: np.ndarray) -> np.ndarray:
    return np.array([[series.sum(), len(series)], [series[-1], series[0]]], dtype=np.float32)


def test_run_packed_answers_each_request_with_its_own_series() -> None:
    requests = [[np.array([1.0, 2.0])], [np.array([3.0] * 7), np.array([4.0])], [np.array([5.0])]]
    passes: list[tuple[list[int], float]] = []
    answers = run_packed(
        requests,
        fingerprint_model,
        max_padded_cost=8,
        on_pass=lambda b, pad, _s: passes.append((b.rows.tolist(), pad)),
    )
    # Lengths 2, 7, 1, 1 -> sorted rows 2, 3, 0 (cost 3*2=6), then row 1 alone (7).
    assert passes == [([2, 3, 0], pytest.approx(1 - 4 / 6)), ([1], 0.0)]
    for request, answer in zip(requests, answers, strict=True):
        assert len(answer) == len(request)
        for s, a in zip(request, answer, strict=True):
            np.testing.assert_allclose(a, expected_fingerprint(s), rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.lists(st.integers(-1000, 1000), min_size=1, max_size=30), min_size=1, max_size=5
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 200),
    st.integers(1, 16),
)
def test_run_packed_equals_each_series_alone(
    raw: list[list[list[int]]], budget: int, max_rows: int
) -> None:
    """Guards against any mix-up of rows by sorting, bucketing or scattering, for any shape."""
    requests = [[np.array(s, dtype=np.float32) for s in r] for r in raw]
    answers = run_packed(requests, fingerprint_model, max_padded_cost=budget, max_rows=max_rows)
    assert [len(a) for a in answers] == [len(r) for r in requests]
    for request, answer in zip(requests, answers, strict=True):
        for s, a in zip(request, answer, strict=True):
            np.testing.assert_allclose(a, expected_fingerprint(s), rtol=1e-6)
