"""The benchmark loop: every sample x method, one row of ``results.csv`` each, appended as it goes.

- The model is loaded once (by the caller, or by each Ray worker) and shared by all methods.
- Resumable: a (sample, method) pair that already has a row is skipped, so a second run over the same folder
  does no edits; ``retry_failed`` first drops the rows of failed pairs so they run again.
- A sample that fails (unreadable file, bad settings, an exception in a method or its scoring) becomes a row
  with ``status=error`` and ``error="Type: message"``, a one-line warning in the log, and the run goes on.
  ``failed.csv`` (``sample,method,reason``) lists every failed row of ``results.csv``; it is rewritten whenever
  the loop stops, an interrupt (Ctrl-C) included, and by the report.
- Every finished pair's row is on disk before the next pair starts, so an interrupt loses only the pair in
  progress (which runs on the next resume).
- ``run.json`` records the settings each method ran with; resuming with other settings for a method, another
  model, seed or perceptual distance is refused rather than mixed into one table.
- Where the edits run is up to an :class:`Executor`: :class:`LocalExecutor` (the default) runs them here, one after
  another; ``executors.RayExecutor`` spreads them over Ray actors. Either way this loop alone writes the rows, the
  outputs and ``failed.csv``, so a run started by one executor can be resumed by the other.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import EditConfig
from ..files import write_png_atomic, write_text_atomic
from ..ground_truth import GroundTruthEdit
from ..instructions import DragRequest
from ..limits import one_line
from ..models.base import Backbone
from ..perceptual import PerceptualDistance
from .memory import PeakMemory
from .methods import MethodSpec
from .scoring import IF_KEYS, TRUTH_KEYS, score_sample
from .suites import Sample, request_type

logger = logging.getLogger(__name__)

RESULTS = "results.csv"
FAILED = "failed.csv"
FAILED_COLUMNS = ("sample", "method", "reason")
RUN_RECORD = "run.json"
OUTPUTS = "outputs"
PASS_KEYS = ("forward", "truncated_forward", "backward")
COLUMNS = ("sample", "type", "method", "status", "error", "seconds", *PASS_KEYS, "peak_memory_mb", "perceptual",
           *IF_KEYS, *TRUTH_KEYS, "output")
NUMERIC = frozenset(("seconds", *PASS_KEYS, "peak_memory_mb", *IF_KEYS, *TRUTH_KEYS))
RUN_KEYS = ("model", "seed", "suite", "perceptual")  # must match between runs into one folder


class BenchError(RuntimeError):
    """A run that cannot start (e.g. it would mix settings into an earlier run's results); one line."""


@dataclass
class RunStats:
    edits: int = 0  # (sample, method) pairs run by this call, failed ones included
    failed: int = 0  # of those, how many failed
    skipped: int = 0  # pairs that already had a row


# ------------------------------------------------------------------------------------------------ results.csv


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` (numbers as floats, empty cells as NaN); [] if there is none yet.

    A row cut short by a crash (no status, or fewer cells than columns) is dropped, so its pair runs again.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            if raw.get("status") not in ("ok", "error") or None in raw.values():  # None: a cell the row lacks
                continue
            rows.append({k: (_number(v) if k in NUMERIC else (v or "")) for k, v in raw.items() if k in COLUMNS})
    return rows


def _number(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return "" if value is None else value


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one row (header first on a new file), flushed to disk before returning."""
    fresh = not path.is_file() or path.stat().st_size == 0
    if not fresh:
        with path.open("rb") as handle:
            handle.seek(-1, 2)
            fresh_line = handle.read(1) == b"\n"
    with path.open("a", newline="", encoding="utf-8") as handle:
        if not fresh and not fresh_line:  # a crash cut the last row short: end it so this one stands alone
            handle.write("\n")
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        if fresh:
            writer.writeheader()
        writer.writerow({key: _cell(row.get(key)) for key in COLUMNS})
        handle.flush()


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in COLUMNS})
    return buffer.getvalue()


def write_failures(out_dir: str | Path) -> int:
    """Write ``out_dir/failed.csv`` (``sample,method,reason``, header only when none failed) from the failed rows
    of ``results.csv``; return how many there are."""
    out_dir = Path(out_dir)
    failed = [row for row in read_results(out_dir / RESULTS) if row["status"] == "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FAILED_COLUMNS)
    writer.writerows((row["sample"], row["method"], row["error"]) for row in failed)
    write_text_atomic(out_dir / FAILED, buffer.getvalue())
    return len(failed)


# ------------------------------------------------------------------------------------------------ run record


def config_record(config: EditConfig) -> dict[str, Any]:
    """An ``EditConfig`` as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def record_run(out_dir: Path, info: Mapping[str, Any], configs: Mapping[str, EditConfig]) -> dict[str, Any]:
    """Check ``info`` and the methods' settings against ``run.json`` of an earlier run, then update it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RUN_RECORD
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"methods": {}}
    for key in RUN_KEYS:
        if key in record and key in info and record[key] != info[key]:
            raise BenchError(f"{out_dir} holds a run with {key} {record[key]!r}, this one has {info[key]!r}; "
                             "use another --out")
    for name, config in configs.items():
        settings = config_record(config)
        earlier = record["methods"].get(name)
        if earlier is not None and earlier != settings:
            changed = sorted(k for k in settings if settings[k] != earlier.get(k))
            raise BenchError(f"{out_dir}: method {name} ran with other settings before ({', '.join(changed)}); "
                             "use another --out")
        record["methods"][name] = settings
    record.update({k: v for k, v in info.items() if k != "methods"})
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return record


# ------------------------------------------------------------------------------------------------ the loop


def output_path(out_dir: Path, method: str, sample_id: str) -> Path:
    return Path(out_dir) / OUTPUTS / method / f"{sample_id}.png"


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {one_line(error)}"


@dataclass(frozen=True)
class Job:
    """One loaded sample and the (method, settings) pairs still to run on it."""

    sample: str
    request: DragRequest
    truth: GroundTruthEdit | None
    pairs: tuple[tuple[MethodSpec, EditConfig], ...]


Edited = tuple[dict[str, Any], np.ndarray | None]  # a pair's row (no "output" yet) and its output image


class Executor(Protocol):
    """Where the edits run. The runner hands it jobs and writes what comes back."""

    def run(self, jobs: Iterable[Job], distance: PerceptualDistance, seed: int,
            progress: Callable[[str], None]) -> Iterator[Edited]:
        """Edit and score every pair of ``jobs`` (taking a job only when it can start) and yield each pair's
        :func:`edit_pair` result as it finishes, in any order; ``progress`` gets a one-line status now and then.
        Closing the generator (an interrupt) stops every edit in progress."""


def edit_pair(backbone: Backbone, sample_id: str, request: DragRequest, truth: GroundTruthEdit | None,
              method: MethodSpec, config: EditConfig, distance: PerceptualDistance, seed: int,
              memory: PeakMemory) -> Edited:
    """Run one method on one sample and score its output: (the row, the output image or None if the edit failed).

    A failure in the method or its scoring is recorded in the row (``status=error``), not raised.
    """
    row: dict[str, Any] = {"sample": sample_id, "type": request_type(request), "method": method.name,
                           "perceptual": distance.name}
    image = None
    try:
        memory.start()
        start = time.perf_counter()
        result = method.run(backbone, request, config, seed=seed)
        row["seconds"] = time.perf_counter() - start
        row["peak_memory_mb"] = memory.read_mb()
        row.update({key: getattr(result.passes, key) for key in PASS_KEYS})
        image = result.image
        row.update(score_sample(request, image, distance, truth))
        row["status"] = "ok"
    except Exception as error:  # recorded in the row; the run goes on with the next pair
        logger.warning("%s on %s failed: %s", method.name, sample_id, _error_text(error),
                       exc_info=logger.isEnabledFor(logging.DEBUG))
        row.update(status="error", error=_error_text(error))
    return row, image


def _save_output(out_dir: Path, row: dict[str, Any], image: np.ndarray | None) -> None:
    """Write an edit's output under ``out_dir/outputs`` and name it in its row; a failed write fails the row."""
    if image is None:
        return
    path = output_path(out_dir, row["method"], row["sample"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png_atomic(path, image)
    except Exception as error:  # recorded in the row, as an edit's own failure is
        logger.warning("%s on %s failed: %s", row["method"], row["sample"], _error_text(error))
        for key in (*IF_KEYS, *TRUTH_KEYS):  # scores of an output that is not on disk
            row.pop(key, None)
        row.update(status="error", error=_error_text(error))
        return
    row["output"] = path.relative_to(out_dir).as_posix()


class LocalExecutor:
    """Every pair in this process, one after another, on one loaded backbone (the default)."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def run(self, jobs: Iterable[Job], distance: PerceptualDistance, seed: int,
            progress: Callable[[str], None]) -> Iterator[Edited]:
        memory = PeakMemory(self.backbone.device)
        for job in jobs:
            for method, config in job.pairs:
                progress(method.name)
                yield edit_pair(self.backbone, job.sample, job.request, job.truth, method, config, distance, seed,
                                memory)


def run_benchmark(backbone: Backbone, samples: Sequence[Sample], methods: Sequence[MethodSpec],
                  configs: Mapping[str, EditConfig], out_dir: str | Path, distance: PerceptualDistance, *,
                  seed: int = 0, retry_failed: bool = False, show_progress: bool = True) -> RunStats:
    """:func:`run_benchmark_on` a :class:`LocalExecutor` of ``backbone``: every edit here, one after another."""
    return run_benchmark_on(LocalExecutor(backbone), samples, methods, configs, out_dir, distance, seed=seed,
                            retry_failed=retry_failed, show_progress=show_progress)


def run_benchmark_on(executor: Executor, samples: Sequence[Sample], methods: Sequence[MethodSpec],
                     configs: Mapping[str, EditConfig], out_dir: str | Path, distance: PerceptualDistance, *,
                     seed: int = 0, retry_failed: bool = False, show_progress: bool = True) -> RunStats:
    """Run every pending (sample, method) pair on ``executor``, appending a row to ``out_dir/results.csv`` as each
    finishes; then (also when interrupted) list the failed rows in ``out_dir/failed.csv``."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / RESULTS
    rows = read_results(results)
    used = {row["perceptual"] for row in rows if row["perceptual"]}
    if used - {distance.name}:
        raise BenchError(f"{results} was scored with {', '.join(sorted(used))}, this run uses {distance.name}; "
                         "use another --out (tables never mix the two)")
    if retry_failed and any(row["status"] == "error" for row in rows):
        rows = [row for row in rows if row["status"] != "error"]
        write_text_atomic(results, _csv_text(rows))
    done = {(row["sample"], row["method"]) for row in rows}
    stats = RunStats()
    bar = tqdm(total=len(samples), desc="bench", unit="sample", disable=not show_progress, file=sys.stderr)
    running: dict[str, int] = {}  # sample -> its pairs handed to the executor and not back yet

    def jobs() -> Iterator[Job]:
        """The samples with pending pairs, loaded one at a time as the executor asks for them."""
        for sample in samples:
            pending = [method for method in methods if (sample.id, method.name) not in done]
            stats.skipped += len(methods) - len(pending)
            if not pending:
                bar.update()
                continue
            try:
                request, truth = sample.load()
            except Exception as error:  # an unreadable sample fails its rows, not the run
                logger.warning("sample %s could not be loaded: %s", sample.id, _error_text(error))
                for method in pending:
                    append_row(results, {"sample": sample.id, "type": "unknown", "method": method.name,
                                         "status": "error", "error": _error_text(error), "perceptual": distance.name})
                    stats.edits += 1
                    stats.failed += 1
                bar.update()
                continue
            running[sample.id] = len(pending)
            yield Job(sample.id, request, truth, tuple((method, configs[method.name]) for method in pending))

    try:
        with closing(executor.run(jobs(), distance, seed, bar.set_postfix_str)) as edited:
            for row, image in edited:
                _save_output(out_dir, row, image)
                append_row(results, row)
                stats.edits += 1
                stats.failed += row["status"] == "error"
                running[row["sample"]] -= 1
                if not running[row["sample"]]:
                    bar.update()
    finally:
        bar.close()
        write_failures(out_dir)
    return stats
