"""``dragnext demo``: a translate and a rotate on bundled example scenes, scored against the exact ground truth."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .editor import DragEditor, EditResult
from .files import write_png_atomic
from .ground_truth import GroundTruthEdit, random_edit
from .metrics import score_edit
from .models.base import Backbone
from .visualize import draw_instructions, side_by_side, stack_rows

# (operation type, seed) of the example scenes; chosen once, kept fixed so figures can be compared over time.
EXAMPLES: tuple[tuple[str, int], ...] = (("translate", 3), ("rotate", 1))


def example_edits(examples=EXAMPLES) -> list[GroundTruthEdit]:
    return [random_edit(seed, op_type) for op_type, seed in examples]


@dataclass
class DemoRow:
    edit: GroundTruthEdit
    result: EditResult
    scores: dict[str, float]


def run_demo(backbone: Backbone, output: Path, progress: Callable[[str, int, int], None] | None = None,
             examples=EXAMPLES) -> str:
    """Edit the example scenes, write ``input + instructions | output | ground truth`` rows, return a report.

    A missing folder of ``output`` is created right before writing, once the edits have succeeded."""
    output = Path(output)
    if output.suffix.lower() != ".png":  # checked before the edits, which take a while
        raise ValueError(f"output: '{output}' must end in .png")
    editor = DragEditor(backbone)
    rows: list[DemoRow] = []
    for edit in example_edits(examples):
        result = editor(edit.request, progress=progress)
        rows.append(DemoRow(edit, result, score_edit(result.image, edit)))

    pictures = []
    for row in rows:
        request = row.edit.request
        expected = (row.edit.expected_image * 255).round().astype(np.uint8)
        pictures.append(side_by_side(
            [draw_instructions(request.image, request.operations), row.result.image, expected],
            [f"{row.edit.op_type}: input + instruction", f"output  IoU {row.scores['iou']:.2f}", "ground truth"],
        ))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_png_atomic(output, stack_rows(pictures))
    return format_report(rows, output)


def format_report(rows: list[DemoRow], output: Path) -> str:
    lines = [f"wrote {output}", f"{'edit':<10} {'IoU':>5} {'IoU unedited':>12} {'centroid err':>12} "
             f"{'PSNR':>6} {'PSNR shape':>10} {'seconds':>7}"]
    for row in rows:
        s = row.scores
        centroid = f"{s['centroid_error']:.2f} px" if math.isfinite(s["centroid_error"]) else "lost"
        lines.append(f"{row.edit.op_type:<10} {s['iou']:>5.2f} {s['iou_unedited']:>12.2f} {centroid:>12} "
                     f"{s['psnr']:>6.1f} {s['psnr_shape']:>10.1f} {row.result.seconds:>7.1f}")
    return "\n".join(lines)
