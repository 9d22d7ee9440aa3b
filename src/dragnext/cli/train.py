"""``dragnext train-bundled``: train the bundled pixel-space model (models/bundled_training.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import checked_seed, reports_errors


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    train = subparsers.add_parser("train-bundled", help="train the bundled pixel-space model")
    train.add_argument("out_dir")
    train.add_argument("--minutes", type=float, default=110.0)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=command_train_bundled)
    return train


@reports_errors
def command_train_bundled(args: argparse.Namespace) -> int:
    from ..models.bundled_training import TrainConfig, train_bundled

    def progress(step: int, seconds: float, loss: float) -> None:
        if step % 250 == 0:
            print(f"step {step}  {seconds:.0f} s  loss {loss:.4f}", flush=True)

    train_bundled(Path(args.out_dir), TrainConfig(minutes=args.minutes, seed=checked_seed(args.seed)), progress)
    return 0
