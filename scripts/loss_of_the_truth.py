"""Does the region objective prefer the right answer? Its loss for the exact result against no edit.

For each synthetic scene, the input and the ground-truth result are both inverted to the first optimised
timestep with the bundled model's default preset, and scored by two objectives at eta = 1: ``paper`` (features
of the moved region against the detached original features, warped: the paper's LRO term) and ``v2`` (engine
v2's :class:`~dragnext.objective.RegionObjective`: translations as the paper, every other region and the vacated
area against the features of the moved, filled start). A ratio truth / unedited well below 1 means the
objective points at the ground truth; near or above 1, minimising it cannot find it.

With ``--outputs DIR`` (a method's folder of a benchmark run, e.g. docs/benchmarks/synthetic/outputs/dragnext)
that method's output images are inverted and scored the same way.

    python scripts/loss_of_the_truth.py [--per-type 10] [--types translate rotate] [--outputs DIR]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image

from dragnext.bench.suites import length_group, request_type, synthetic_suite
from dragnext.config import preset
from dragnext.editor import DragEditor, ddim_invert
from dragnext.models import load_backbone
from dragnext.objective import RegionObjective, region_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("--types", nargs="+", default=["translate", "rotate", "scale", "deform"])
    parser.add_argument("--outputs", type=Path, help="a method's output folder of a synthetic benchmark run")
    args = parser.parse_args()
    backbone = load_backbone("bundled", device="cpu")
    config = preset(backbone.name)
    scheduler = DDIMScheduler.from_config(backbone.scheduler_config)
    scheduler.set_timesteps(config.num_steps)
    t = scheduler.timesteps[config.num_steps - config.inversion_steps]
    conditioning = backbone.encode_prompt("")
    ratios: dict[str, dict[str, list[float]]] = {}

    editor = DragEditor(backbone, config)
    size = None

    def latent_of(image):
        return ddim_invert(backbone, backbone.encode_image(image), conditioning, config)[-1]

    def features_of(latent):
        return backbone.features(latent, t, conditioning, config.feature_blocks, size)

    for sample in synthetic_suite(args.per_type, tuple(args.types)):
        request, truth = sample.load()
        size = config.feature_size(request.image.shape[:2])
        images = {"exact": (truth.expected_image * 255).round().astype(np.uint8)}
        if args.outputs is not None:
            images["method"] = np.asarray(Image.open(args.outputs / f"{sample.id}.png").convert("RGB"))
        with torch.no_grad():
            latent = latent_of(request.image)
            source = features_of(latent)
            start = features_of(editor.moved_latent(latent, request, config))
            objectives = {
                "paper": lambda f, source=source, request=request: float(region_loss(
                    f, source, request.operations, 1.0, request.image.shape[:2], config.deformation)),
                "v2": RegionObjective(config, request.operations, request.image.shape[:2], source, start),
            }
            scored = {name: features_of(latent_of(image)) for name, image in images.items()}
            for objective_name, objective in objectives.items():
                score = objective if objective_name == "paper" else (lambda f, o=objective: float(o(f, 1.0)))
                unedited = score(source)
                losses = {name: score(features) for name, features in scored.items()}
                group = length_group(sample.id, request_type(request))
                for name, loss in losses.items():
                    key = f"{objective_name}: {name}"
                    ratios.setdefault(group, {}).setdefault(key, []).append(loss / max(unedited, 1e-12))
                print(f"{sample.id:18s} {objective_name:5s} unedited {unedited:.4f}  " + "  ".join(
                    f"{name} {loss:.4f} (ratio {loss / max(unedited, 1e-12):.3f})" for name, loss in losses.items()),
                    flush=True)
    print()
    for group, by_name in ratios.items():
        print(f"{group:15s} " + "; ".join(f"{name} / unedited: mean {np.mean(v):.3f} (min {np.min(v):.3f}, "
                                           f"max {np.max(v):.3f})" for name, v in by_name.items())
              + f" over {len(next(iter(by_name.values())))} scenes")


if __name__ == "__main__":
    main()
