"""The conversion loop: every sample of a dataset read, turned into a request and written, or recorded as failed."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...instructions import DragRequest, InstructionError
from ...limits import one_line
from .common import DATASET_TITLES, DATASETS, FAILED_NAME, MARKER_FILES, ConversionError, json_number
from .drag100 import read_drag100
from .dragbench import read_dragbench
from .regions import DEFAULT_RADIUS_RULE, build_request, check_radius
from .samples import (
    check_destination,
    find_samples,
    prepare_output,
    remove_stale_staging,
    sample_name,
    withdraw,
    write_failed_csv,
    write_sample,
)

logger = logging.getLogger(__name__)

NOTE = "point-based benchmark: each handle point became a translate of a disc around it"
_READERS = {"dragbench": read_dragbench, "drag100": read_drag100}
_REASON_LIMIT = 300  # characters of an unforeseen exception's message kept in a reason


@dataclass
class ConversionReport:
    converted: list[Path] = field(default_factory=list)  # the instructions.json written, one per sample
    failed: list[tuple[str, str]] = field(default_factory=list)  # (sample, one-line reason)
    dataset: str = ""
    out: Path | None = None  # <out>/<dataset>
    radius: float | None = None  # as given; None = the default rule

    @property
    def failed_csv(self) -> Path | None:
        return None if self.out is None else self.out / FAILED_NAME

    def summary(self) -> str:
        total = len(self.converted) + len(self.failed)
        title = DATASET_TITLES.get(self.dataset, self.dataset)
        radius = DEFAULT_RADIUS_RULE if self.radius is None else json_number(self.radius)
        text = (
            f"{title}: converted {len(self.converted)} of {total} samples into {self.out} "
            f"(translate of a disc around each handle, radius {radius} px)"
        )
        if self.failed:
            text += f"; {len(self.failed)} failed, listed in {self.failed_csv}"
        return text


def _read_sample(dataset: str, folder: Path, radius: float | None) -> tuple[DragRequest, dict[str, Any], list[Any]]:
    """The request of one sample, its sidecar ``region`` record and its points; any failure as one line."""
    try:
        image, editable, points, prompt = _READERS[dataset](folder)
        request, region = build_request(image, editable, points, prompt, radius)
    except InstructionError:  # ConversionError included: already one line naming the file
        raise
    except Exception as error:  # a hostile file may raise what no check foresaw; it fails its own sample only
        logger.debug("unexpected error converting %s", folder, exc_info=True)
        raise ConversionError(f"unexpected {type(error).__name__}: {one_line(error, _REASON_LIMIT)}") from None
    return request, region, points


def _convert(dataset: str, root: str | os.PathLike[str], out: str | os.PathLike[str], radius: Any) -> ConversionReport:
    radius = check_radius(radius)
    root = Path(root)
    samples = find_samples(root, dataset)
    marker = MARKER_FILES[dataset]
    if not samples:
        raise ConversionError(f"{root}: no {DATASET_TITLES[dataset]} samples (folders with {marker}) found")
    target_root = Path(out) / dataset
    started = time.time()
    prepare_output(target_root)
    for path in remove_stale_staging(target_root, started):
        logger.info("removed %s, left by an interrupted conversion", path)
    report = ConversionReport(dataset=dataset, out=target_root, radius=radius)
    try:
        for folder in samples:
            name = sample_name(folder, root)
            destination = target_root / name
            try:
                request, region, points = _read_sample(dataset, folder, radius)
            except InstructionError as error:
                report.failed.append((name, one_line(error)))
                withdraw(destination)
                continue
            try:
                check_destination(destination, target_root)
            except ConversionError as error:
                report.failed.append((name, str(error)))
                continue
            sidecar = {
                "source": os.path.abspath(folder),
                "dataset": dataset,
                "points": [[json_number(v) for v in point] for point in points],
                "region": region,
                "note": NOTE,
            }
            report.converted.append(write_sample(destination, request, sidecar))
    finally:  # also when interrupted or when writing fails: the list then covers the samples looked at
        write_failed_csv(report.failed_csv, report.failed)
    return report


def convert_dragbench(
    root: str | os.PathLike[str], out: str | os.PathLike[str], radius: float | None = None
) -> ConversionReport:
    """Convert every DragBench sample under ``root`` into ``<out>/dragbench/<category>/<sample>/``."""
    return _convert("dragbench", root, out, radius)


def convert_drag100(
    root: str | os.PathLike[str], out: str | os.PathLike[str], radius: float | None = None
) -> ConversionReport:
    """Convert every Drag100 sample under ``root`` into ``<out>/drag100/<sample>/``."""
    return _convert("drag100", root, out, radius)


def convert(
    dataset: str, root: str | os.PathLike[str], out: str | os.PathLike[str], radius: float | None = None
) -> ConversionReport:
    """:func:`convert_dragbench` or :func:`convert_drag100` by name (``"dragbench"`` or ``"drag100"``)."""
    if dataset not in DATASETS:
        raise ConversionError(f"dataset: {dataset!r} is not one of {', '.join(DATASETS)}")
    return _convert(dataset, root, out, radius)
