"""Trainer: AdamW, gradient clipping, one-cycle schedule, early stopping on a temporal split.

The validation split is cut from the training part: each series' last `horizon`
training points are validation targets, and training examples only ever use
what comes before them.

Data parallelism: series are dealt round-robin into `world` shards, and each step's
global batch is `batch_size / world` examples from every shard, each shard with its
own random stream. Under torchrun each rank holds one shard and DistributedDataParallel
averages the gradients; a single process given `data_shards=world` draws the very same
global batch, so the two runs train the same model.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training import distributed
from training.model import ModelConfig, StackedLSTMForecaster, pinball_loss
from training.windows import (
    Batch,
    concat_batches,
    last_window_batches,
    pad_right,
    sample_batch,
    trainable,
)

LOSS_SCALES = ("level", "naive", "spread")


@dataclass
class TrainConfig:
    epochs: int = 40
    steps_per_epoch: int = 50
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    patience: int = 10
    # Early stopping may not end a run before this epoch: around the one-cycle peak the
    # validation loss can rise for `patience` epochs and the annealed epochs never run.
    min_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    min_history: int = 12
    max_history: int = 126
    # What each example's pinball loss is divided by (LOSS_SCALES): "level" is the mean
    # |value| of its history, like sMAPE's denominator; "naive" the history's mean
    # |x_t - x_{t-m}|, MASE's scale; "spread" the model's own normalisation scale.
    loss_scale: str = "level"
    season_length: int = 1
    # Forecast origins are drawn with weight recency**(steps from the series' end), so
    # below 1 training dwells on the recent past that the test follows; 1 is uniform.
    recency: float = 1.0
    # Shards drawn by this process; under torchrun each rank draws only its own.
    data_shards: int = 1
    # After early stopping has chosen the epoch count, train again from the same start on
    # every training point, the validation targets included, and keep that model.
    refit: bool = False

    def __post_init__(self) -> None:
        if self.loss_scale not in LOSS_SCALES:
            raise ValueError(
                f"loss_scale must be one of {', '.join(LOSS_SCALES)}, got {self.loss_scale!r}"
            )
        if not 0.0 < self.recency <= 1.0:
            raise ValueError(f"recency must be in (0, 1], got {self.recency}")
        if not 0 <= self.min_epochs <= self.epochs:
            raise ValueError(
                f"min_epochs must be in [0, epochs={self.epochs}], got {self.min_epochs}"
            )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class TrainResult:
    model: StackedLSTMForecaster  # best validation epoch's weights, on the CPU, in eval mode
    # The best epoch's weights before any refit (`model` itself without one): the model whose
    # validation forecasts are out of sample, for choices made after training.
    early_model: StackedLSTMForecaster
    history: list[dict[str, float]]  # one row per epoch: epoch, train_loss, val_loss, seconds
    best_epoch: int
    best_val_loss: float
    device: str
    seconds: float


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def loss_scale(values: torch.Tensor, lengths: torch.Tensor, kind: str, season: int) -> torch.Tensor:
    """Each history's loss divisor (B,), from its observed points only; see TrainConfig."""
    steps = torch.arange(values.shape[1], device=values.device)  # (T,)
    observed = steps.unsqueeze(0) < lengths.to(values.device).unsqueeze(1)  # (B, T)
    if kind == "level":
        scale = (values.abs() * observed).sum(dim=1) / lengths.to(values)  # (B,)
    else:  # "naive": seasonal differences where the history is long enough, else lag 1
        lag = torch.where(lengths > season, season, 1).to(values.device)  # (B,)
        lagged = values.gather(1, (steps.unsqueeze(0) - lag.unsqueeze(1)).clamp(min=0))  # (B, T)
        pairs = observed & (steps.unsqueeze(0) >= lag.unsqueeze(1))  # (B, T)
        count = pairs.sum(dim=1).clamp(min=1).to(values.dtype)  # (B,)
        scale = ((values - lagged).abs() * pairs).sum(dim=1) / count  # (B,)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def batch_loss(
    model: StackedLSTMForecaster | DistributedDataParallel,
    batch: Batch,
    quantiles: torch.Tensor,
    config: TrainConfig,
) -> torch.Tensor:
    forecast = model(batch.values, batch.lengths)  # (B, H, Q)
    if config.loss_scale == "spread":
        inner = model.module if isinstance(model, DistributedDataParallel) else model
        _, scale = inner.location_scale(*inner.recent(batch.values, batch.lengths))  # (B,)
    else:
        scale = loss_scale(batch.values, batch.lengths, config.loss_scale, config.season_length)
    return pinball_loss(forecast.float(), batch.targets, quantiles, scale)


def validation_loss(
    model: StackedLSTMForecaster, batches: list[Batch], quantiles: torch.Tensor, config: TrainConfig
) -> float:
    model.eval()
    with torch.inference_mode():
        total = sum(
            batch_loss(model, b, quantiles, config).item() * len(b.lengths) for b in batches
        )
    model.train()
    return total / sum(len(b.lengths) for b in batches)


def fit(
    train_series: list[np.ndarray],
    model_config: ModelConfig,
    config: TrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    desc: str = "training",
    companions: list[np.ndarray] | None = None,
    bar_position: int = 0,
) -> TrainResult:
    """Train on `train_series` (each series' in-sample part) and return the best model.

    `companions` are further series that only add training examples, whole: they are
    never validated on, so early stopping still watches `train_series` alone.
    `bar_position` is the terminal line of the progress bar, for runs side by side.

    Under torchrun every rank calls this with all the series and trains on its shard;
    every rank returns the same model.
    """
    rank = distributed.current()
    if rank.distributed and config.data_shards != 1:
        raise ValueError("data_shards simulates ranks in one process; leave it 1 under torchrun")
    world = rank.world if rank.distributed else config.data_shards
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of {world} shards")
    device = distributed.local_device(rank, pick_device(config.device))
    distributed.start(rank, device)
    try:
        setup = _Setup(model_config, config, rank, world, device, bar_position)
        return _train(train_series, companions or [], setup, on_epoch, progress, desc)
    finally:
        # Also when training fails: a rank that leaves without this holds the others' ports.
        distributed.stop()


@dataclass(frozen=True)
class _Setup:
    """What every training run of one member shares."""

    model_config: ModelConfig
    config: TrainConfig
    rank: distributed.Rank
    world: int
    device: torch.device
    bar_position: int = 0


def _train(
    train_series: list[np.ndarray],
    companions: list[np.ndarray],
    setup: _Setup,
    on_epoch: Callable[[dict[str, float]], None] | None,
    progress: bool,
    desc: str,
) -> TrainResult:
    config, device = setup.config, setup.device
    horizon = setup.model_config.horizon
    # Validation targets are each series' last horizon points; training stops before them.
    usable = trainable(train_series, 2 * horizon, config.min_history)
    if not usable:
        raise ValueError(
            f"no series has the {config.min_history + 2 * horizon} points needed "
            f"(min_history {config.min_history} + training and validation horizons {horizon})"
        )
    extra = trainable(companions, horizon, config.min_history)
    # Every rank validates on all series with identical weights: identical early stopping.
    val_batches = [
        b.to(device) for b in last_window_batches(usable, horizon, config.max_history, 1024)
    ]
    held_out = [s[:-horizon] for s in usable] + extra
    chosen = _run_epochs(held_out, val_batches, config.epochs, setup, on_epoch, progress, desc)
    if not config.refit:
        return chosen
    whole = trainable(train_series, horizon, config.min_history) + extra
    # Ranks whose validation sums differ in the last bit could pick different best epochs;
    # a refit running more epochs on one rank would wait in an all-reduce for ever.
    epochs = distributed.from_rank_zero(setup.rank, chosen.best_epoch, device)
    refitted = _run_epochs(whole, None, epochs, setup, None, progress, f"{desc} refit")
    return TrainResult(
        model=refitted.model,
        early_model=chosen.model,
        history=chosen.history,
        best_epoch=chosen.best_epoch,
        best_val_loss=chosen.best_val_loss,
        device=chosen.device,
        seconds=chosen.seconds + refitted.seconds,
    )


def _run_epochs(
    fitting: list[np.ndarray],
    val_batches: list[Batch] | None,
    epochs: int,
    setup: _Setup,
    on_epoch: Callable[[dict[str, float]], None] | None,
    progress: bool,
    desc: str,
) -> TrainResult:
    """Train a fresh model on `fitting` for up to `epochs` epochs of the configured schedule.

    With `val_batches`, keep the best validation epoch's weights and stop early; without,
    keep the last epoch's. Seeded afresh, so a refit starts where the first run did.
    """
    model_config, config, rank, world, device = (
        setup.model_config,
        setup.config,
        setup.rank,
        setup.world,
        setup.device,
    )
    seed_everything(config.seed)
    horizon = model_config.horizon
    # The shards this process draws: its own under torchrun, all of them otherwise. Each
    # shard has its own random stream, the same whichever process draws from it.
    drawn = [rank.rank] if rank.distributed else list(range(world))
    shards = [fitting[k::world] for k in drawn]
    rngs = [np.random.default_rng([config.seed, k]) for k in drawn]
    per_shard = config.batch_size // world

    model = StackedLSTMForecaster(model_config).to(device)
    # DDP broadcasts rank 0's initial weights and averages gradients over ranks.
    trained = DistributedDataParallel(model) if rank.distributed else model
    quantiles = torch.tensor(model_config.quantiles, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # The whole schedule's length even when fewer epochs run: a refit of E epochs follows
    # the very learning rates the chosen run had in its first E.
    total_steps = config.epochs * config.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.1
    )
    # bf16 autocast on CUDA only; CPU stays in float32 so results are bit-stable there.
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    history: list[dict[str, float]] = []
    best_state, best_loss, best_epoch, stale = None, float("inf"), 0, 0
    started = time.perf_counter()
    bar = tqdm(
        total=epochs * config.steps_per_epoch,
        desc=desc,
        unit="step",
        disable=not (progress and rank.is_main),
        position=setup.bar_position,
    )
    model.train()
    for epoch in range(1, epochs + 1):
        epoch_start, running = time.perf_counter(), 0.0
        for _ in range(config.steps_per_epoch):
            batch = concat_batches(
                [
                    sample_batch(
                        s,
                        per_shard,
                        horizon,
                        config.min_history,
                        config.max_history,
                        r,
                        config.recency,
                    )
                    for s, r in zip(shards, rngs, strict=True)
                ]
            ).to(device)
            with autocast:
                loss = batch_loss(trained, batch, quantiles, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.clip)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            bar.update(1)
        if val_batches is None:
            best_epoch = epoch  # no validation: the last epoch's weights are kept
            continue
        with autocast:
            val = validation_loss(model, val_batches, quantiles, config)
        row = {
            "epoch": float(epoch),
            "train_loss": running / config.steps_per_epoch,
            "val_loss": val,
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        bar.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val:.4f}", best=best_epoch)
        if on_epoch is not None and rank.is_main:
            on_epoch(row)
        if val < best_loss:
            best_state, best_loss, best_epoch, stale = (
                copy.deepcopy(model.state_dict()),
                val,
                epoch,
                0,
            )
        else:
            stale += 1
        # Decided once, on rank 0, and broadcast: ranks whose float sums differ in the last
        # bit must still stop together, or the rest would wait in an all-reduce for ever.
        stop = stale >= config.patience and epoch >= config.min_epochs
        if distributed.agree(rank, stop, device):
            break
    bar.close()

    if val_batches is not None:
        assert best_state is not None  # at least one epoch ran
        model.load_state_dict(best_state)
    model = model.cpu().eval()
    return TrainResult(
        model=model,
        early_model=model,
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        device=str(device),
        seconds=time.perf_counter() - started,
    )


# Series per forward pass when forecasting a whole set.
FORECAST_BATCH = 512


def forecast(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    histories: list[np.ndarray],
    max_history: int,
    batch_size: int = FORECAST_BATCH,
) -> np.ndarray:
    """Quantile forecasts (N, H, Q) for histories, each cut to its last max_history points.

    `model` is the eager module (in eval mode) or the exported TorchScript one.
    """
    out = []
    with torch.inference_mode():
        for i in range(0, len(histories), batch_size):
            values, lengths = pad_right([h[-max_history:] for h in histories[i : i + batch_size]])
            out.append(model(torch.from_numpy(values), torch.from_numpy(lengths)).numpy())
    return np.concatenate(out).astype(np.float64)
