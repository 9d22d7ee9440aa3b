"""Wall time of one benchmark run here (local executor) and on 1, 2, ... Ray workers of this machine.

    python scripts/measure_scale_out.py [--model bundled] [--per-type 2] [--methods warp] [--workers 1 2] [--fast]

The same suite as ``dragnext bench --suite synthetic --per-type 2 --methods warp``, each run into a fresh folder.
Ray is started once, with every CPU of the machine, and not timed. A Ray run's time includes starting its workers
(each imports torch and loads the model; printed apart as "start"), the local run's does not (the model is loaded
before it). Each worker gets ``CPUs // workers`` torch threads, the local run torch's default (every core). Then
compares every run's rows with the local run's (timings aside).
"""

import argparse
import logging
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from dragnext.bench.executors import RayExecutor
from dragnext.bench.methods import resolve_methods
from dragnext.bench.runner import RESULTS, LocalExecutor, read_results, run_benchmark_on
from dragnext.bench.suites import synthetic_suite
from dragnext.config import FAST_SETTINGS
from dragnext.editor import check_config
from dragnext.models import load_backbone
from dragnext.perceptual import load_distance

TIMINGS = ("seconds", "peak_memory_mb")


class ReadyTime(logging.Handler):
    """The time the Ray executor logs that its workers are ready."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.at = math.nan

    def emit(self, record: logging.LogRecord) -> None:
        if "workers ready" in record.getMessage():
            self.at = time.perf_counter()


def differences(a: list[dict], b: list[dict]) -> str:
    """Which rows of ``b`` differ from ``a`` (timings aside), and by how much at most."""
    mine = {(row["sample"], row["method"]): row for row in b}
    if mine.keys() != {(row["sample"], row["method"]) for row in a}:
        return "other pairs"
    changed, largest = [], 0.0
    for row in a:
        other = mine[row["sample"], row["method"]]
        keys = [k for k in row if k not in TIMINGS and row[k] != other[k]
                and not (isinstance(row[k], float) and math.isnan(row[k]) and math.isnan(other[k]))]
        if keys:
            changed.append(row["sample"])
            largest = max([largest, *(abs(row[k] - other[k]) for k in keys if isinstance(row[k], float))])
    return f"{len(changed)} of {len(a)} rows differ, by at most {largest:.2g} ({', '.join(changed)})" if changed \
        else "identical"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--per-type", type=int, default=2)
    parser.add_argument("--methods", default="warp")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fast", action="store_true", help="the bench's --fast settings")
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    backbone = load_backbone(args.model, device="cpu")
    methods = resolve_methods(args.methods, fast=args.fast)
    configs = {spec.name: spec.config(backbone, FAST_SETTINGS if args.fast else {}) for spec in methods}
    for config in configs.values():
        check_config(backbone, config)
    distance = load_distance("auto")
    samples = synthetic_suite(args.per_type)
    edits = len(samples) * len(methods)
    print(f"{len(samples)} samples x {len(methods)} method(s) = {edits} edits, {args.model} on CPU, {cpus} CPUs, "
          f"torch {torch.__version__}, ray {ray.__version__}")
    ready = ReadyTime()
    logging.getLogger("dragnext.bench.executors").addHandler(ready)
    logging.getLogger("dragnext.bench.executors").setLevel(logging.INFO)

    times: dict[str, float] = {}
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        def timed(name, executor):
            out = Path(scratch) / name
            ready.at = math.nan
            start = time.perf_counter()
            run_benchmark_on(executor, samples, methods, configs, out, distance, show_progress=False)
            end = time.perf_counter()
            times[name], rows[name] = end - start, read_results(out / RESULTS)
            per_edit = statistics.median(row["seconds"] for row in rows[name])
            started = "" if math.isnan(ready.at) else (f" (start {ready.at - start:4.1f} s + edits "
                                                       f"{end - ready.at:5.1f} s)")
            print(f"{name:>8}: {times[name]:6.1f} s wall{started}, median {per_edit:.2f} s per edit", flush=True)

        timed("local", LocalExecutor(backbone))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            for workers in args.workers:
                timed(f"ray x{workers}", RayExecutor(args.model, device="cpu", workers=workers))
        finally:
            ray.shutdown()

    for workers in args.workers:
        name = f"ray x{workers}"
        print(f"{name}: {times['local'] / times[name]:.2f} x the local run's speed, "
              f"{times[f'ray x{args.workers[0]}'] / times[name]:.2f} x {args.workers[0]} worker's; rows against "
              f"the local run's: {differences(rows['local'], rows[name])}")


if __name__ == "__main__":
    main()
