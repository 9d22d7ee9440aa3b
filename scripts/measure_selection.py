"""How well does a click select a shape? Region-from-click (selection.py) on synthetic scenes, against the truth.

For each scene (seeds ``--seed`` + i, outside the benchmark's 1000+), every shape that is at least 60% visible
and 40 px large is clicked once, at a random pixel fully inside its visible part; the selected mask is compared
with the shape's visible mask (coverage >= 0.5). Prints the share of clicks whose IoU reaches 0.9, the mean and
the worst IoU, per setting.

    python scripts/measure_selection.py [--scenes 100] [--tolerance 5 10 20]
"""

import argparse

import numpy as np
from scipy import ndimage

from dragnext.metrics import iou
from dragnext.scenes import random_scene, render, visible_mask
from dragnext.selection import DEFAULT_TOLERANCE, select_region


def clicks_on_shapes(scenes: int, seed: int):
    """(image, click (x, y), true mask) for every clickable shape of the scenes."""
    rng = np.random.default_rng(seed)
    for i in range(scenes):
        scene = random_scene(seed + i)
        image = np.round(render(scene) * 255).astype(np.uint8)
        for index in range(len(scene.shapes)):
            coverage = visible_mask(scene, index)
            truth = coverage >= 0.5
            if truth.sum() < 40 or coverage.sum() < 0.6 * _full_area(scene, index):
                continue
            inside = ndimage.binary_erosion(coverage >= 0.999)  # a pixel a user would call inside
            rows, cols = np.nonzero(inside)
            if rows.size == 0:
                continue
            k = rng.integers(rows.size)
            yield image, (int(cols[k]), int(rows[k])), truth


def _full_area(scene, index: int) -> float:
    from dragnext.scenes import shape_coverage

    return float(shape_coverage(scene.shapes[index], scene.size).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--tolerance", type=float, nargs="+", default=[DEFAULT_TOLERANCE])
    args = parser.parse_args()
    cases = list(clicks_on_shapes(args.scenes, args.seed))
    for tolerance in args.tolerance:
        scores = np.array([iou(select_region(image, [click], tolerance=tolerance), truth)
                           for image, click, truth in cases])
        print(f"tolerance {tolerance:g}: IoU >= 0.9 on {np.mean(scores >= 0.9):.1%} of {len(scores)} clicks, "
              f"mean {scores.mean():.3f}, worst {scores.min():.3f}", flush=True)


if __name__ == "__main__":
    main()
