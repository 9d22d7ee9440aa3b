"""Reconstruction PSNR of the bundled model: invert and denoise random scenes with no edit.

    python scripts/measure_reconstruction.py [--model bundled] [--scenes 10] [--strength 0.5]
"""

import argparse

import numpy as np

from dragnext.editor import reconstruct
from dragnext.metrics import psnr
from dragnext.models import load_backbone
from dragnext.scenes import random_scene, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--strength", type=float, nargs="+", default=[0.5, 0.75])
    args = parser.parse_args()
    backbone = load_backbone(args.model, device="cpu")
    for strength in args.strength:
        values = []
        for seed in range(1000, 1000 + args.scenes):
            image = (render(random_scene(seed)) * 255).round().astype(np.uint8)
            values.append(psnr(reconstruct(backbone, image, strength), image))
        print(f"strength {strength}: PSNR mean {np.mean(values):.2f} dB, min {np.min(values):.2f}, "
              f"max {np.max(values):.2f} over {len(values)} scenes")


if __name__ == "__main__":
    main()
