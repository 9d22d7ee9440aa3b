"""Moving the clean latent, then inverting it (instead of moving the inverted latent): shape IoU and PSNR on the 40
synthetic edits, with and without mutual attention, bundled model, no region optimisation (issue #9).

Usage: .venv/bin/python scripts/clean_start_iou.py  (1 min 31 s on 2 cores)
"""

import numpy as np
import torch

from dragnext.bench.suites import synthetic_suite
from dragnext.config import preset
from dragnext.editor import DragEditor, Inverted, ddim_invert
from dragnext.metrics import score_edit
from dragnext.models import load_backbone
from dragnext.vocabulary import OPERATION_TYPES


class CleanMove(DragEditor):
    """Inverts the clean latent with every region already moved (and the vacated area filled)."""

    def _invert(self, work, prompt, config, seed, report, passes, timings):
        latent0 = self.backbone.encode_image(work.image)
        conditioning = self.backbone.encode_prompt(prompt)
        self._fit_lora(work.image, prompt, config, seed, report, passes, timings)
        moved0 = self.moved_latent(latent0, work, config)
        return Inverted(moved0, conditioning, ddim_invert(self.backbone, moved0, conditioning, config, lambda d: None))


def main() -> None:
    torch.set_num_threads(1)
    backbone = load_backbone("bundled", device="cpu")
    config = preset("bundled")
    variants = {"clean": config.override(start="unedited", pbsi_timesteps=0),
                "clean-nomutual": config.override(start="unedited", pbsi_timesteps=0, mutual_attention=False)}
    results = {name: [] for name in variants}
    for sample in synthetic_suite(per_type=10):
        request, truth = sample.load()
        line = [sample.id]
        for name, settings in variants.items():
            scores = score_edit(CleanMove(backbone, settings)(request).image, truth)
            results[name].append((sample.id, scores["iou"], scores["psnr"]))
            line.append(f"{name} {scores['iou']:.3f} {scores['psnr']:.1f}")
        print(*line, flush=True)
    for name, rows in results.items():
        iou, psnr = np.array([r[1:] for r in rows]).mean(0)
        print(name, f"mean iou {iou:.4f} psnr {psnr:.2f}")
        for op_type in OPERATION_TYPES:
            for length in ("short", "long"):
                long = length == "long"
                group = [r[1:] for r in rows if r[0].startswith(op_type) and r[0].endswith("long") == long]
                iou, psnr = np.array(group).mean(0)
                print(" ", op_type, length, f"{iou:.3f} {psnr:.2f}")


if __name__ == "__main__":
    main()
