"""How well does the deformation field reproduce a vertex drag, with no model? Pixels warped against the truth.

For vertex drags of the synthetic generator (seeds outside the benchmark's: 5000+), the input image is warped
through the inverse of a displacement field (bilinear) and the shape recovered from the result is compared with
the exact result (shape IoU, as the benchmark scores it). Rows: the rigid disc translation (the paper's reading),
the field with the region's own rule (``geometry.deformation_radius``), wider supports, the support read from
the picture's corners (``support.deform_support``, the editor's), and the field with the true polygon edge
length as its support (what a support that followed the object exactly would reach).

    python scripts/deformation_support.py [--scenes 40]
"""

import argparse

import numpy as np
import torch

from dragnext import geometry
from dragnext.ground_truth import random_edit
from dragnext.metrics import iou, recover_shape_mask
from dragnext.models.base import image_to_tensor, tensor_to_image
from dragnext.support import deform_support


def warped(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    grid = torch.as_tensor(geometry.image_to_normalized(source, image.shape[:2]), dtype=torch.float32)[None]
    return tensor_to_image(geometry.warp(image_to_tensor(image), grid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=40, help="scenes, each with a short and a long vertex drag")
    args = parser.parse_args()
    edits = [random_edit(5000 + i, "deform", long=long) for i in range(args.scenes) for long in (False, True)]
    rows, cols = np.mgrid[0:64, 0:64].astype(np.float64)
    points = np.stack([cols, rows], axis=-1)

    def radius_of(edit, rule):
        op = edit.request.operations[0]
        length = float(np.linalg.norm(np.subtract(op.target, op.handle)))
        if rule == "the region":
            return geometry.deformation_radius(op.region, op.handle, op.target)
        if rule == "the picture's corners":
            return deform_support(edit.request.image, op)
        if rule == "2 drag lengths":
            return max(geometry.deformation_radius(op.region, op.handle, op.target), 2.0 * length)
        vertices = np.asarray(edit.scene.shapes[edit.shape_index].vertices)
        i = int(np.argmin(np.linalg.norm(vertices - np.asarray(op.handle), axis=1)))
        edge = min(np.linalg.norm(vertices[(i - 1) % len(vertices)] - vertices[i]),
                   np.linalg.norm(vertices[(i + 1) % len(vertices)] - vertices[i]))
        return max(edge, 1.05 * length)

    def score(edit, output):
        color = edit.expected_scene.shapes[edit.shape_index].color
        return iou(recover_shape_mask(output, color), edit.expected_mask > 0.5)

    results = {}
    for edit in edits:
        op = edit.request.operations[0]
        moved, grid = geometry.region_motion(op.region, "deform", op.handle, op.target, None, 1.0, (64, 64), (64, 64),
                                             deformation="translate")
        rigid = geometry.warp(image_to_tensor(edit.request.image), grid)
        rigid = torch.where(moved > 0, rigid, image_to_tensor(edit.request.image))
        results.setdefault("translated disc (paper)", []).append(score(edit, tensor_to_image(rigid)))
        for rule in ("the region", "2 drag lengths", "the picture's corners", "true edge length"):
            source = geometry.deformation_source(points, op.handle, op.target, radius_of(edit, rule))
            results.setdefault(f"field, support: {rule}", []).append(score(edit, warped(edit.request.image, source)))
    for name, values in results.items():
        print(f"{name:34s} IoU {np.mean(values):.3f} (short {np.mean(values[0::2]):.3f}, "
              f"long {np.mean(values[1::2]):.3f}) over {len(values)} drags")


if __name__ == "__main__":
    main()
