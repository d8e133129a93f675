"""Training examples: padding, contiguity of history and target, the validation cut."""

from __future__ import annotations

import numpy as np

from training.windows import last_window_batches, pad_right, sample_batch, trainable


def test_pad_right_places_each_history_at_the_start_of_its_row() -> None:
    """Guards against left-padding or rows shifted by the mask assignment."""
    values, lengths = pad_right([np.array([1.0, 2.0, 3.0]), np.array([4.0]), np.array([5.0, 6.0])])
    assert lengths.tolist() == [3, 1, 2]
    assert values.dtype == np.float32
    assert values.tolist() == [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [5.0, 6.0, 0.0]]


def test_sampled_history_is_followed_directly_by_its_target() -> None:
    """Guards against an off-by-one between history and target (a leaked or skipped point),
    and against histories outside [min_history, max_history]."""
    # Values equal their index plus an offset per series, so every slice is identifiable.
    series = [np.arange(40, dtype=np.float64) + 1000 * k for k in range(3)]
    rng = np.random.default_rng(0)
    batch = sample_batch(series, batch_size=200, horizon=4, min_history=5, max_history=12, rng=rng)
    lengths = batch.lengths.numpy()
    assert lengths.min() >= 5 and lengths.max() <= 12
    assert len(set(lengths.tolist())) > 3  # ragged, so packing is exercised
    rows = zip(batch.values.numpy(), lengths, batch.targets.numpy(), strict=True)
    for values, length, target in rows:
        history = values[:length]
        assert np.all(np.diff(history) == 1.0)
        assert np.all(values[length:] == 0.0)
        assert target.tolist() == [history[-1] + 1 + i for i in range(4)]


def test_sampling_is_reproducible_for_a_seed() -> None:
    """Guards against hidden global randomness: same seed, same batch."""
    series = [np.arange(30, dtype=np.float64)]
    first = sample_batch(series, 16, 3, 2, 20, np.random.default_rng(5))
    second = sample_batch(series, 16, 3, 2, 20, np.random.default_rng(5))
    assert np.array_equal(first.values.numpy(), second.values.numpy())


def test_last_window_takes_the_final_horizon_as_target() -> None:
    """Guards against validation windows that overlap the points the model is scored on."""
    series = [np.arange(10, dtype=np.float64), np.arange(20, 27, dtype=np.float64)]
    (batch,) = last_window_batches(series, horizon=3, max_history=5, batch_size=8)
    assert batch.lengths.tolist() == [5, 4]
    assert batch.values.numpy()[0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert batch.targets.numpy().tolist() == [[7.0, 8.0, 9.0], [24.0, 25.0, 26.0]]


def test_trainable_drops_series_too_short_for_one_example() -> None:
    series = [np.zeros(7), np.zeros(8)]
    assert [len(s) for s in trainable(series, horizon=3, min_history=5)] == [8]
