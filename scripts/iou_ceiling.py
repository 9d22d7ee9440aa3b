"""Where the suite's IoU goes (issue #9): for the 40 synthetic edits, the shape IoU of the exact expected image,
of that image inverted and denoised with no edit (the model's ceiling), of `warp` and of ours (v2), bundled model.

Usage: .venv/bin/python scripts/iou_ceiling.py  (2 min 35 s on 2 cores)
"""

import numpy as np
import torch

from dragnext.baselines import warp_drag
from dragnext.bench.suites import synthetic_suite
from dragnext.config import preset
from dragnext.editor import DragEditor, reconstruct
from dragnext.metrics import score_edit
from dragnext.models import load_backbone
from dragnext.vocabulary import OPERATION_TYPES


def main() -> None:
    torch.set_num_threads(1)
    backbone = load_backbone("bundled", device="cpu")
    config = preset("bundled")
    rows = []
    for sample in synthetic_suite(per_type=10):
        request, truth = sample.load()
        exact = (np.asarray(truth.expected_image) * 255).round().astype(np.uint8)
        row = (sample.id, score_edit(exact, truth)["iou"], score_edit(reconstruct(backbone, exact), truth)["iou"],
               score_edit(warp_drag(backbone, request, config).image, truth)["iou"],
               score_edit(DragEditor(backbone, config)(request).image, truth)["iou"])
        rows.append(row)
        print(row[0], *[f"{v:.3f}" for v in row[1:]], flush=True)
    values = np.array([r[1:] for r in rows])
    exact, ceiling, warp, ours = values.mean(0)
    print(f"mean gt {exact:.3f} recon(gt) {ceiling:.3f} warp {warp:.3f} ours {ours:.3f}")
    for op_type in OPERATION_TYPES:
        group = np.array([r[1:] for r in rows if r[0].startswith(op_type)]).mean(0)
        print(op_type, " ".join(f"{v:.3f}" for v in group))


if __name__ == "__main__":
    main()
