"""Reconstruction PSNR of the bundled model: invert and denoise random scenes with no edit.

    python scripts/measure_reconstruction.py [--model bundled] [--scenes 10] [--strength 0.5]
"""

import argparse

import numpy as np

from dragnext.config import preset
from dragnext.editor import DragEditor
from dragnext.instructions import DragRequest, make_operation
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
        # No PBSI timestep and no mutual attention: the edit is inversion then plain DDIM denoising.
        config = preset(backbone.name).override(strength=strength, pbsi_timesteps=0, mutual_attention=False,
                                                auto_editable_radius=None, paste_outside_editable=False)
        values = []
        for seed in range(1000, 1000 + args.scenes):
            image = (render(random_scene(seed)) * 255).round().astype(np.uint8)
            region = np.zeros(image.shape[:2], dtype=bool)
            region[:4, :4] = True  # an operation is required; with no PBSI timestep it does nothing
            request = DragRequest(image=image, operations=(make_operation("translate", region, (1, 1), (2, 2)),))
            values.append(psnr(DragEditor(backbone, config)(request).image, image))
        print(f"strength {strength}: PSNR mean {np.mean(values):.2f} dB, min {np.min(values):.2f}, "
              f"max {np.max(values):.2f} over {len(values)} scenes")


if __name__ == "__main__":
    main()
