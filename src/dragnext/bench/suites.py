"""Benchmark suites: lists of samples, each a drag request and, for procedural scenes, its exact ground truth.

- ``synthetic``: ``per_type`` scenes for each operation type from :func:`ground_truth.random_edit`, scene seeds
  ``1000, 1001, ...`` (the same for every type), alternating short and long drags (odd indices are
  ``long=True``: longer translations and deformations, rotations of 60-120 degrees, factors beyond 1.6 or below 0.6).
- a folder: every instruction file (``*.json``, the design.md format) below it, except converter sidecars and
  files under hidden folders (``.git``, or the staging folder of a conversion that was killed).
- ``dragbench`` / ``drag100``: the point-based benchmark under ``--data`` converted (``bench/convert/``) into
  ``<out>/inputs/<dataset>/``, then read as a folder. A sample that could not be converted stays in the suite
  as a sample that fails to load with the converter's reason, so it is counted and listed like any failure.

Samples load lazily, so that one unreadable file becomes one failed row, not a failed run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from ..ground_truth import GroundTruthEdit, random_edit
from ..instructions import DragRequest, load_instructions
from ..vocabulary import OPERATION_TYPES
from .convert import DATASETS, SIDECAR_NAME, ConversionError, ConversionReport, convert

SYNTHETIC_SEED = 1000  # seed of the first scene of each type; the i-th uses SYNTHETIC_SEED + i
LONG_SUFFIX = "-long"  # ends the id of a synthetic sample with a long drag or a large rotation
INSTRUCTION_FILE = "instructions.json"  # a folder holding one request is named by its folder


class SuiteError(ValueError):
    """A suite that cannot be built; the message is one line."""


@dataclass(frozen=True)
class Sample:
    id: str  # unique within the suite; a relative POSIX path, so outputs can be stored under it
    load: Callable[[], tuple[DragRequest, GroundTruthEdit | None]]


def request_type(request: DragRequest) -> str:
    """The operation type shared by all of the request's operations, or ``mixed``."""
    types = {op.type for op in request.operations}
    return types.pop() if len(types) == 1 else "mixed"


def length_group(sample_id: str, op_type: str) -> str:
    """``op_type``, with ``LONG_SUFFIX`` for a sample with a long drag or a large rotation: "rotate-long"."""
    return op_type + (LONG_SUFFIX if sample_id.endswith(LONG_SUFFIX) else "")


def _synthetic(seed: int, op_type: str, long: bool) -> tuple[DragRequest, GroundTruthEdit]:
    edit = random_edit(seed, op_type, long=long)
    return edit.request, edit


def synthetic_suite(per_type: int = 10, types: tuple[str, ...] = OPERATION_TYPES) -> list[Sample]:
    if per_type < 1:
        raise SuiteError(f"--per-type must be at least 1, got {per_type}")
    samples = []
    # Round-robin over the types, so that a run stopped early (and resumed later) has covered them all alike.
    for i in range(per_type):
        for op_type in types:
            long = i % 2 == 1
            samples.append(Sample(f"{op_type}-{i:03d}{LONG_SUFFIX if long else ''}",
                                  partial(_synthetic, SYNTHETIC_SEED + i, op_type, long)))
    return samples


def _from_file(path: Path) -> tuple[DragRequest, None]:
    return load_instructions(path), None


def folder_suite(folder: str | Path) -> list[Sample]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SuiteError(f"{folder}: not a folder (suites: synthetic, dragbench, drag100, or a folder of "
                         "instruction files)")
    files = sorted(p for p in folder.rglob("*.json")
                   if p.name != SIDECAR_NAME and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise SuiteError(f"{folder}: no instruction files (*.json) found")
    samples = []
    for path in files:
        relative = path.relative_to(folder)
        if path.name == INSTRUCTION_FILE:
            name = relative.parent.as_posix() if relative.parent != Path(".") else folder.name
        else:
            name = relative.with_suffix("").as_posix()
        samples.append(Sample(name, partial(_from_file, path)))
    return samples


def _not_converted(reason: str) -> tuple[DragRequest, None]:
    raise ConversionError(reason)


def converted_suite(dataset: str, data_root: str | Path, out_dir: str | Path) -> tuple[list[Sample], ConversionReport]:
    """Convert the benchmark under ``data_root`` into ``out_dir/inputs/<dataset>`` and read that folder; each
    sample that failed to convert is a sample whose loading raises :class:`ConversionError` with its reason."""
    report = convert(dataset, data_root, Path(out_dir) / "inputs")
    if not report.converted:
        raise SuiteError(f"{data_root}: no {dataset} sample could be converted")
    failed = {name: reason for name, reason in report.failed}
    samples = [sample for sample in folder_suite(report.out) if sample.id not in failed]
    samples += [Sample(name, partial(_not_converted, reason)) for name, reason in failed.items()]
    # the order of the source folders, as convert goes (and as folder_suite lists the converted ones)
    return sorted(samples, key=lambda sample: PurePosixPath(sample.id).parts), report


def load_suite(suite: str, *, per_type: int = 10, data: str | Path | None = None,
               out_dir: str | Path = ".") -> tuple[list[Sample], str]:
    """(samples, a one-line description) of ``synthetic``, ``dragbench``/``drag100`` (needs ``data``) or a folder."""
    if suite == "synthetic":
        return synthetic_suite(per_type), (f"synthetic: {per_type} procedural scenes per type "
                                           f"({', '.join(OPERATION_TYPES)}), seeds {SYNTHETIC_SEED}+, odd = long")
    if suite in DATASETS:
        if data is None:
            raise SuiteError(f"--suite {suite} needs --data ROOT (the dataset folder)")
        samples, report = converted_suite(suite, data, out_dir)
        return samples, report.summary()
    return folder_suite(suite), f"instruction files under {suite}"
