"""Train the bundled pixel-space model: ``python scripts/train_bundled.py OUT_DIR [--minutes M]``.

The result folder ``OUT_DIR/model`` is what ships in ``src/dragnext/models/bundled/``.
"""

import argparse
import logging
from pathlib import Path

from dragnext.models.bundled_training import TrainConfig, train_bundled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--minutes", type=float, default=TrainConfig.minutes)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    def progress(step: int, seconds: float, loss: float) -> None:
        if step % 250 == 0:
            logging.info("step %d  %.0f s  loss %.4f", step, seconds, loss)

    train_bundled(args.out_dir, TrainConfig(minutes=args.minutes, seed=args.seed), progress)


if __name__ == "__main__":
    main()
