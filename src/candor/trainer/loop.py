"""The training loop: seeded minibatches, early stopping on validation NLL,
progress (a bar on a terminal, a line every few seconds in a log), and data
parallelism when run under torchrun."""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from candor.trainer.distributed import DistContext
from candor.trainer.losses import smoothed_bce, soft_cross_entropy


@dataclass(frozen=True)
class LoopOptions:
    max_epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 15  # epochs without a better validation NLL before stopping
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        if self.max_epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("--epochs, --batch-size and --patience must be >= 1")
        if not self.learning_rate > 0 or self.weight_decay < 0:
            raise ValueError("--lr must be > 0 and --weight-decay >= 0")


LOG_EVERY_S = 5.0  # off a terminal (a log file, nohup, a container), one progress line at most this often


class Progress:
    """Per-epoch progress on stderr: a tqdm bar left in place on a terminal; elsewhere a plain line at the
    first epoch, then at most every LOG_EVERY_S seconds, and at the last."""

    def __init__(self, max_epochs: int, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.max_epochs = max_epochs
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.bar = tqdm(total=max_epochs, desc="train", unit="epoch", file=self.stream, disable=not self.tty, leave=True)
        self.started = time.monotonic()
        self.logged = -math.inf

    def epoch(self, result: LoopResult, train_loss: float, val_nll: float, last: bool) -> None:
        self.bar.update(1)
        self.bar.set_postfix(train_loss=f"{train_loss:.4f}", val_nll=f"{val_nll:.4f}")
        now = time.monotonic()
        if not self.enabled or self.tty or not (result.epochs_run == 1 or last or now - self.logged >= LOG_EVERY_S):
            return
        self.logged = now
        print(f"train: epoch {result.epochs_run}/{self.max_epochs}, train loss {train_loss:.4f}, val NLL {val_nll:.4f} "
              f"(best {result.best_val_nll:.4f} at epoch {result.best_epoch}), {now - self.started:.0f} s"
              + (", done" if last else ""), file=self.stream, flush=True)  # fmt: skip

    def close(self) -> None:
        self.bar.close()


@dataclass
class LoopResult:
    epochs_run: int
    best_epoch: int
    best_val_nll: float
    history: list[dict] = field(default_factory=list)


def validation_nll(model: nn.Module, X: torch.Tensor, y: torch.Tensor, multilabel: bool) -> float:
    """Hard-label NLL at T = 1: the quantity early stopping watches."""
    model.eval()
    with torch.no_grad():
        z = model(X)
        loss = F.binary_cross_entropy_with_logits(z, y) if multilabel else F.cross_entropy(z, y)
    return float(loss)


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int, ctx: DistContext) -> list[torch.Tensor]:
    """This rank's minibatches for one epoch.

    Every rank draws the same permutation from (seed, epoch), pads it to a
    multiple of the world size and takes every world_size-th row, so all ranks
    run the same number of steps (DDP needs that) and together see each row.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    if ctx.active:
        pad = (-n) % ctx.world_size
        perm = torch.cat([perm, perm[:pad]])[ctx.rank :: ctx.world_size]
    return list(perm.split(batch_size))


def train_loop(
    model: nn.Module,
    X_train: np.ndarray,
    q_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    multilabel: bool,
    weights: np.ndarray | None,
    options: LoopOptions,
    ctx: DistContext,
) -> LoopResult:
    """Train ``model`` in place on soft targets ``q_train`` [N, K]; on return
    it holds the weights of the epoch with the lowest validation NLL.

    ``weights`` are per-row (multiclass) or per-class (multi-label) loss weights.
    """
    options.check()
    X = torch.as_tensor(X_train, dtype=torch.float32)
    q = torch.as_tensor(q_train, dtype=torch.float32)
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    Xv = torch.as_tensor(X_val, dtype=torch.float32)
    yv = torch.as_tensor(y_val, dtype=torch.float32 if multilabel else torch.int64)
    net: nn.Module = model
    if ctx.active:
        net = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(net.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)

    best = LoopResult(epochs_run=0, best_epoch=0, best_val_nll=math.inf)
    best_state = copy.deepcopy(model.state_dict())
    progress = Progress(options.max_epochs, options.progress and ctx.is_main)
    for epoch in range(1, options.max_epochs + 1):
        net.train()
        total, rows = 0.0, 0
        for idx in _epoch_batches(len(X), options.batch_size, options.seed, epoch, ctx):
            logits = net(X[idx])
            if multilabel:
                loss = smoothed_bce(logits, q[idx], w)
            else:
                loss = soft_cross_entropy(logits, q[idx], None if w is None else w[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            rows += len(idx)
        # Replicas hold identical weights after each synchronised step, so every
        # rank computes the same validation NLL and stops at the same epoch.
        val = validation_nll(model, Xv, yv, multilabel)
        best.history.append({"epoch": epoch, "train_loss": total / max(rows, 1), "val_nll": val})
        best.epochs_run = epoch
        stop = False
        if val < best.best_val_nll - 1e-6:
            best.best_val_nll, best.best_epoch = val, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            stop = epoch - best.best_epoch >= options.patience
        progress.epoch(best, total / max(rows, 1), val, last=stop or epoch == options.max_epochs)
        if stop:
            break
    progress.close()
    model.load_state_dict(best_state)
    model.eval()
    return best
