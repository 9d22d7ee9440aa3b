"""``summary.json``, ``report.md`` and ``failed.csv`` from ``results.csv``: a method x type table of scores and
costs, an image grid per type (input with instruction | each method | ground truth) saved next to the report,
and the list of failed pairs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..files import write_png_atomic, write_text_atomic
from ..visualize import draw_instructions, side_by_side, stack_rows
from .runner import FAILED, PASS_KEYS, RESULTS, read_results, write_failures
from .scoring import IF_KEYS
from .suites import LONG_SUFFIX, Sample, length_group

SUMMARY = "summary.json"
REPORT = "report.md"
MEAN_KEYS = (*IF_KEYS, "psnr", "ssim", "psnr_shape", "iou", "iou_unedited")  # averaged over the ok rows
MEDIAN_KEYS = ("centroid_error", "seconds", *PASS_KEYS)  # medians: a lost shape's error is inf, timings skew
ALL = "all"

# (column title, summary key, format) of the markdown table; ground-truth columns only when a suite has them.
IF_COLUMNS = (("IF_ed ↑", "if_ed", "{:.3f}"), ("IF_hh ↓", "if_hh", "{:.3f}"), ("IF_th ↑", "if_th", "{:.3f}"))
TRUTH_COLUMNS = (("IoU ↑", "iou", "{:.3f}"), ("centroid px ↓", "centroid_error", "{:.2f}"),
                 ("PSNR ↑", "psnr", "{:.2f}"), ("SSIM ↑", "ssim", "{:.3f}"))
COST_COLUMNS = (("s/edit", "seconds", "{:.2f}"), ("fwd", "forward", "{:.0f}"),
                ("trunc fwd", "truncated_forward", "{:.0f}"), ("bwd", "backward", "{:.0f}"),
                ("peak MB", "peak_memory_mb", "{:.0f}"))


def _aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ok = [row for row in rows if row["status"] == "ok"]
    group: dict[str, Any] = {"n": len(rows), "failed": len(rows) - len(ok)}
    for key in MEAN_KEYS + MEDIAN_KEYS:
        values = np.array([row[key] for row in ok], dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            group[key] = None
        else:
            group[key] = float(np.mean(values) if key in MEAN_KEYS else np.median(values))
    memory = [row["peak_memory_mb"] for row in ok if not math.isnan(row["peak_memory_mb"])]
    group["peak_memory_mb"] = max(memory) if memory else None
    return group


def summarise(rows: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {type: aggregate, ..., "all": aggregate}}`` in the order of ``methods``, types as they come."""
    types = list(dict.fromkeys(row["type"] for row in rows))
    summary = {}
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        if not mine:
            continue
        groups = {kind: _aggregate([row for row in mine if row["type"] == kind]) for kind in types}
        groups = {kind: group for kind, group in groups.items() if group["n"]}
        groups[ALL] = _aggregate(mine)
        summary[method] = groups
    return summary


def _jsonable(value: Any) -> Any:
    """Strict JSON: an infinite centroid error (shape lost) becomes the string "inf"."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _format(value: Any, pattern: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return pattern.format(value)


def _table(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], with_truth: bool) -> list[str]:
    columns = IF_COLUMNS + (TRUTH_COLUMNS if with_truth else ()) + COST_COLUMNS
    lines = ["| method | type | n | failed | " + " | ".join(title for title, _, _ in columns) + " |",
             "|---|---|---:|---:|" + "---:|" * len(columns)]
    for method, groups in summary.items():
        for kind, group in groups.items():
            cells = [_format(group[key], pattern) for _, key, pattern in columns]
            lines.append(f"| {method} | {kind} | {group['n']} | {group['failed']} | " + " | ".join(cells) + " |")
    return lines


PIVOT_KEYS = (("IoU", "iou"), ("IF_th", "if_th"))


def length_pivot(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], key: str) -> dict[str, dict[str, Any]]:
    """``{method: {"translate": mean, "translate-long": mean, ...}}`` of ``key`` over the ok rows, the columns
    splitting each type into ordinary and long edits (sample ids ending in ``-long``); empty without long ones."""
    if not any(str(row["sample"]).endswith(LONG_SUFFIX) for row in rows):
        return {}

    def column(row: Mapping[str, Any]) -> str:
        return length_group(str(row["sample"]), row["type"])

    types = list(dict.fromkeys(row["type"] for row in rows))
    columns = sorted(dict.fromkeys(column(row) for row in rows),
                     key=lambda name: (types.index(name.removesuffix(LONG_SUFFIX)), name.endswith(LONG_SUFFIX)))
    pivot: dict[str, dict[str, Any]] = {}
    for method in methods:
        cells: dict[str, Any] = {}
        for name in columns:
            values = np.array([row[key] for row in rows if row["method"] == method and row["status"] == "ok"
                               and column(row) == name], dtype=np.float64)
            values = values[~np.isnan(values)]
            cells[name] = float(values.mean()) if values.size else None
        if any(value is not None for value in cells.values()):
            pivot[method] = cells
    return pivot


def _pivot_table(pivot: Mapping[str, Mapping[str, Any]]) -> list[str]:
    columns = list(next(iter(pivot.values())))
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for method, cells in pivot.items():
        lines.append(f"| {method} | " + " | ".join(_format(cells[c], "{:.3f}") for c in columns) + " |")
    return lines


def _blank(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 200, dtype=np.uint8)


def _read_png(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("RGB"))
    except OSError:
        return None


def write_grids(out_dir: Path, rows: Sequence[Mapping[str, Any]], samples: Sequence[Sample], methods: Sequence[str],
                per_type: int = 3) -> dict[str, str]:
    """A PNG per type with up to ``per_type`` samples: input + instruction | each method | ground truth."""
    by_id = {sample.id: sample for sample in samples}
    outputs = {(row["sample"], row["method"]): row for row in rows if row["status"] == "ok"}
    chosen: dict[str, list[str]] = {}
    for row in rows:
        if row["status"] == "ok" and row["sample"] in by_id and row["sample"] not in chosen.get(row["type"], []):
            picks = chosen.setdefault(row["type"], [])
            if len(picks) < per_type:
                picks.append(row["sample"])
    grids = {}
    for kind, sample_ids in chosen.items():
        pictures = []
        for sample_id in sample_ids:
            request, truth = by_id[sample_id].load()
            height, width = request.image.shape[:2]
            panels = [draw_instructions(request.image, request.operations, request.editable_mask)]
            labels = [f"{sample_id}"]
            for method in methods:
                row = outputs.get((sample_id, method))
                image = _read_png(out_dir / row["output"]) if row else None
                panels.append(image if image is not None else _blank(height, width))
                labels.append(method if image is not None else f"{method} (failed)")
            if truth is not None:
                panels.append((truth.expected_image * 255).round().astype(np.uint8))
                labels.append("ground truth")
            pictures.append(side_by_side(panels, labels))
        name = f"grid_{kind}.png"
        write_png_atomic(out_dir / name, stack_rows(pictures))
        grids[kind] = name
    return grids


def write_report(out_dir: str | Path, samples: Sequence[Sample], methods: Sequence[str], info: Mapping[str, Any],
                 grid_samples: int = 3) -> Path:
    """Write ``summary.json``, ``report.md``, the grids and ``failed.csv`` from ``out_dir/results.csv``; return the
    report's path."""
    out_dir = Path(out_dir)
    write_failures(out_dir)
    rows = read_results(out_dir / RESULTS)
    present = [m for m in methods if any(row["method"] == m for row in rows)]
    present += [m for m in dict.fromkeys(row["method"] for row in rows) if m not in present]
    summary = summarise(rows, present)
    grids = write_grids(out_dir, rows, samples, present, grid_samples) if grid_samples > 0 else {}
    pivots = {key: length_pivot(rows, present, key) for _, key in PIVOT_KEYS}
    document = _jsonable({"info": dict(info), "methods": summary, "by_length": pivots, "grids": grids})
    write_text_atomic(out_dir / SUMMARY, json.dumps(document, indent=2, allow_nan=False, default=str) + "\n")
    with_truth = any(not math.isnan(row["iou"]) for row in rows if row["status"] == "ok")
    lines = ["# Benchmark report", ""]
    for key, value in info.items():
        if key != "settings":
            lines.append(f"- **{key}**: {value}")
    lines += ["", "IF_* = 1 − perceptual distance over a region (see `metrics.image_fidelity`): IF_ed the area no "
              "operation touches, IF_hh the handle region against the input (lower = the content left), IF_th the "
              "input's handle content moved to the target pose against the output. Means over samples; centroid "
              "error, seconds and passes are medians; peak memory is the maximum.", ""]
    lines += _table(summary, with_truth)
    for title, key in PIVOT_KEYS:
        if pivots[key]:
            lines += ["", f"## {title} by type and drag length (means; `-long`: long drags, large rotations)", ""]
            lines += _pivot_table(pivots[key])
    if grids:
        lines += ["", "## Images", ""]
        for kind, name in grids.items():
            lines += [f"### {kind}", "", f"![{kind}]({name})", ""]
    settings = info.get("settings") or {}
    if settings:
        lines += ["", "## Settings (differences from `EditConfig()` defaults, i.e. the paper's)", ""]
        lines += [f"- `{method}`: {text}" for method, text in settings.items()]
    failures = [row for row in rows if row["status"] == "error"]
    if failures:
        lines += ["", f"## Failed ({len(failures)}, all listed in [{FAILED}]({FAILED}))", ""]
        lines += [f"- {row['sample']} / {row['method']}: {row['error']}" for row in failures[:100]]
        if len(failures) > 100:
            lines.append(f"- … and {len(failures) - 100} more (see results.csv)")
    path = out_dir / REPORT
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path

