"""``dragnext bench``: run methods over a suite and write results.csv, summary.json, report.md and image grids.

Failed pairs are rows of results.csv, listed in failed.csv and the report; the exit status
(:data:`BENCH_EXIT_STATUS`) says whether there are any.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..bench.methods import MAIN, MethodError, resolve_methods
from ..config import FAST_SETTINGS, PAPER, ConfigError, EditConfig, preset
from .common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_SOME_FAILED,
    CliError,
    add_model_flags,
    add_quiet_flag,
    check_device,
    checked_seed,
    load_model,
    parse_override,
    print_error,
    reports_errors,
    resolved_model,
)

DEFAULT_METHODS = ",".join(MAIN)

BENCH_EXIT_STATUS = f"""exit status:
  0    every (sample, method) pair in OUT/results.csv succeeded
  {EXIT_SOME_FAILED}    some pairs failed (a sample that cannot be loaded or converted, or an edit that raised); the run
       went on, and each is a row of results.csv, a line of OUT/failed.csv (sample, method, reason) and of
       report.md; --retry-failed runs them again
  {EXIT_FAILURE}    every edit of this run failed, or the model cannot be loaded
  {EXIT_BAD_INPUT}    bad input: unknown suite or method, settings that cannot work, a folder holding another run
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): every finished pair is kept in results.csv and failed.csv; run the same
       command again to resume"""


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on an argparse subparsers object; ``args.run(args)`` returns the exit status."""
    parser = subparsers.add_parser(
        "bench", help="compare drag methods on a suite; writes results.csv, summary.json, report.md",
        description="Run each method on each sample of a suite with one model, resuming where an earlier run into\n"
        "the same --out stopped, and write OUT/results.csv (one row per sample x method), OUT/failed.csv,\n"
        "OUT/summary.json, OUT/report.md and an image grid per operation type. A sample or edit that fails is\n"
        "recorded and the run goes on. With --cost-only, time our recipe against DragDiffusion's on a randomly\n"
        "initialised SD-1.5-sized UNet instead (--backbone sdxl: SDXL-sized, at 1024 px).",
        epilog=BENCH_EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--suite", help="synthetic, dragbench, drag100 (with --data), or a folder of instruction files")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated methods or groups main, ablations, all (default: {DEFAULT_METHODS})")
    parser.add_argument("--out", required=True, help="output folder (a second run into it resumes)")
    parser.add_argument("--per-type", type=int, default=10, help="synthetic: scenes per operation type (default 10)")
    parser.add_argument("--data", help="dragbench/drag100: the dataset folder; converted into OUT/inputs")
    parser.add_argument("--limit", type=int, help="only the first N samples of the suite")
    add_model_flags(parser, "bundled")
    parser.add_argument("--seed", type=int, default=0, help="seed of every edit (default 0)")
    fast = ", ".join(f"{key}={value}" for key, value in FAST_SETTINGS.items())
    parser.add_argument("--fast", action="store_true",
                        help=f"few steps, for trying things out: {fast}, at most 10 point-drag iterations")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="an EditConfig setting for every method (a method's own defining settings win)")
    parser.add_argument("--perceptual", choices=("auto", "lpips", "ssim"), default="auto",
                        help="distance of the IF metrics: auto = LPIPS when its weights are on disk, else 1-SSIM")
    parser.add_argument("--grid-samples", type=int, default=3, help="samples per type in the image grids (default 3)")
    parser.add_argument("--retry-failed", action="store_true", help="run again the pairs that failed before")
    add_quiet_flag(parser)
    parser.add_argument("--report-only", action="store_true",
                        help="write summary.json, report.md and the grids from the rows already in --out; run nothing")
    scale = parser.add_argument_group("scale-out (docs/scale-out.md)")
    scale.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: one Ray actor per worker, each loading the model "
                            "once (pip install -e '.[ray]')")
    scale.add_argument("--address", help="ray: the cluster to join (default: start one on this machine)")
    scale.add_argument("--workers", type=int,
                       help="ray: workers (default: the cluster's GPUs / --gpus-per-worker, or one per node)")
    scale.add_argument("--gpus-per-worker", type=float,
                       help="ray: GPUs per worker, fractions allowed (default: 1 where the cluster has GPUs, else 0)")
    cost = parser.add_argument_group("cost only")
    cost.add_argument("--cost-only", action="store_true",
                      help="time the DragNeXt and DragDiffusion recipes on a random UNet; no suite, no model")
    cost.add_argument("--backbone", choices=("sd", "sdxl"), default="sd",
                      help="whose presets and UNet: sd (SD-1.5's UNet at 512 px, default) or sdxl (SDXL base's at "
                           "1024 px)")
    cost.add_argument("--cost-unet", help="the UNet: sd15, sdxl, sd2-v, a tiny one for tests (tiny, tiny-sdxl), or a "
                                          "UNet2DConditionModel config JSON (default: the backbone's)")
    cost.add_argument("--cost-size", type=int,
                      help="image side in pixels (default: the backbone's native side, 512 or 1024)")
    cost.add_argument("--cost-repeats", type=int, default=2, help="timed passes of each kind (default 2)")
    parser.set_defaults(run=command_bench)
    return parser


@reports_errors
def command_bench(args: argparse.Namespace) -> int:
    return _cost_only(args) if args.cost_only else _bench(args)


def _cost_only(args) -> int:
    import sys
    from pathlib import Path

    import torch

    from ..bench.cost import cost_comparison, cost_json, cost_markdown
    from ..files import write_text_atomic

    try:
        device = torch.device(args.device) if args.device else None
    except RuntimeError:
        raise CliError(f"--device: '{args.device}' is not a device (try cpu or cuda)", EXIT_BAD_INPUT) from None

    def progress(kind: str, index: int, total: int) -> None:
        if not args.quiet:
            print(f"cost: timing {kind} ({index + 1}/{total}), 1 warm-up + {args.cost_repeats} passes",
                  file=sys.stderr, flush=True)

    try:
        report = cost_comparison(args.cost_unet, args.cost_size, args.cost_repeats, device, progress=progress,
                                 backbone=args.backbone)
    except ValueError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "cost.json", cost_json(report))
    write_text_atomic(out / "cost.md", cost_markdown(report))
    ratios = ", ".join(f"{recipe} {report.ratio(recipe):.3f}" for recipe in list(report.counts)[:-1])
    print(f"wrote {out / 'cost.md'}: time ratio to DragDiffusion: {ratios} ({report.unet} UNet, "
          f"{report.image_size} px, {report.device})")
    return 0


def _settings_text(config: EditConfig, note: set[str] | None = None) -> str:
    default = EditConfig()
    changed = [f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(default, f.name)]
    text = ", ".join(changed) or "the paper's"
    if note:
        text += f" (paper settings this model lacks, from its preset: {', '.join(sorted(note))})"
    return text


def _executor(args):
    """The Ray executor the flags ask for (checked before any model loads), or None for the local one."""
    ray_flags = [flag for flag, value in (("--address", args.address), ("--workers", args.workers),
                                          ("--gpus-per-worker", args.gpus_per_worker)) if value is not None]
    if args.executor != "ray":
        if ray_flags:
            raise CliError(f"{ray_flags[0]}: only with --executor ray", EXIT_BAD_INPUT)
        return None
    from ..bench.executors import RayExecutor
    from ..bench.runner import BenchError

    try:
        return RayExecutor(args.model, device=args.device, bf16=args.bf16, address=args.address,
                           workers=args.workers, gpus_per_worker=args.gpus_per_worker)
    except BenchError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None


def _check_suite_named(suite: str, data: str | None) -> None:
    """The suite's folder or dataset, checked before the suites' code (and torch) loads; ``load_suite`` checks
    the rest."""
    from pathlib import Path

    from ..bench.convert import DATASETS
    from ..limits import quote_path

    if suite == "synthetic":
        return
    if suite in DATASETS:
        if data is None:
            raise CliError(f"--suite {suite} needs --data ROOT (the dataset folder)", EXIT_BAD_INPUT)
        return
    try:
        is_dir = Path(suite).is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        raise CliError(f"{quote_path(suite)}: not a folder (suites: synthetic, {', '.join(DATASETS)}, or a folder of "
                       "instruction files)", EXIT_BAD_INPUT)


def _bench(args) -> int:
    from pathlib import Path

    # 1. everything the user typed, before torch, the suite or the model is loaded
    if not args.suite:
        raise CliError("--suite is required (or --cost-only)", EXIT_BAD_INPUT)
    if args.grid_samples < 0:
        raise CliError("--grid-samples must be >= 0", EXIT_BAD_INPUT)
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1", EXIT_BAD_INPUT)
    _check_suite_named(args.suite, args.data)
    checked_seed(args.seed)
    try:
        methods = resolve_methods(args.methods, fast=args.fast)
    except MethodError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    overrides = dict(FAST_SETTINGS) if args.fast else {}
    overrides.update(dict(parse_override(item) for item in args.set or []))
    kind = resolved_model(args).preset  # read from the model's folder; nothing loads
    try:  # each method's settings on this kind of model: strength=nan and the like are refused now
        for spec in methods:
            spec.config(kind, overrides)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    if args.device:
        check_device(args.device)

    from ..bench.convert import ConversionError
    from ..bench.report import write_report
    from ..bench.runner import (
        FAILED,
        RESULTS,
        BenchError,
        PeakMemory,
        RunStats,
        read_results,
        record_run,
        run_benchmark,
        run_benchmark_on,
    )
    from ..bench.suites import SuiteError, load_suite
    from ..editor import check_config
    from ..perceptual import load_distance

    try:
        distance = load_distance(args.perceptual)
    except RuntimeError as error:
        raise CliError(f"--perceptual lpips: {error}", EXIT_BAD_INPUT) from None
    out = Path(args.out)
    try:
        samples, description = load_suite(args.suite, per_type=args.per_type, data=args.data, out_dir=out)
    except (SuiteError, ConversionError) as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    except OSError as error:  # writing the converted samples of --suite dragbench/drag100
        raise CliError(f"cannot write {error.filename or out}: {error.strerror or error}") from None
    if args.limit is not None:
        samples = samples[: args.limit]
        description += f"; first {len(samples)} samples"
    executor = _executor(args)

    # 2. the model, once; every method's settings checked against it (with Ray the workers load their own: the
    # driver's copy, on the CPU, only checks settings)
    backbone = load_model(resolved_model(args), "cpu" if executor else args.device, args.bf16)
    try:
        configs = {spec.name: spec.config(backbone, overrides) for spec in methods}
        for config in configs.values():
            check_config(backbone, config)
    except ConfigError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    paper = preset(backbone.name, "paper")
    adapted = {f.name for f in dataclasses.fields(PAPER) if getattr(paper, f.name) != getattr(PAPER, f.name)}
    info = {
        "model": args.model, "device": (args.device or "auto") if executor else str(backbone.device),
        "seed": args.seed, "suite": args.suite,
        "suite_description": description, "perceptual": distance.name, "perceptual_distance": distance.description,
        "peak_memory": PeakMemory(backbone.device).kind, "fast": args.fast, "overrides": overrides,
        "methods": [spec.name for spec in methods],
        "executor": "local" if executor is None else (
            f"ray (address {args.address or 'local'}, workers {args.workers or 'auto'}, GPUs per worker "
            f"{'auto' if args.gpus_per_worker is None else args.gpus_per_worker})"),
        "settings": {spec.name: _settings_text(configs[spec.name], adapted if spec.base == "paper" else None)
                     for spec in methods},
    }

    # 3. run, then report on everything in the folder
    try:
        record_run(out, info, configs)
        if args.report_only:
            stats = RunStats()
        elif executor is not None:
            stats = run_benchmark_on(executor, samples, methods, configs, out, distance, seed=args.seed,
                                     retry_failed=args.retry_failed, show_progress=not args.quiet)
        else:
            stats = run_benchmark(backbone, samples, methods, configs, out, distance, seed=args.seed,
                                  retry_failed=args.retry_failed, show_progress=not args.quiet)
        report = write_report(out, samples, [spec.name for spec in methods], info, args.grid_samples)
    except BenchError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    except OSError as error:
        raise CliError(f"cannot write {error.filename or out}: {error.strerror or error}") from None
    except KeyboardInterrupt:  # run_benchmark has flushed every finished row and written failed.csv
        print_error(f"interrupted; the finished pairs are kept in {out / RESULTS}, run the same command again "
                    "to resume")
        return EXIT_INTERRUPTED
    failed_pairs = sum(row["status"] == "error" for row in read_results(out / RESULTS))
    print(f"{stats.edits} edits ({stats.failed} failed), {stats.skipped} already done; {failed_pairs} failed "
          f"pairs in all, listed in {out / FAILED}; wrote {report} (IF metrics with {distance.name})")
    if stats.edits and stats.failed == stats.edits:
        return EXIT_FAILURE
    return EXIT_SOME_FAILED if failed_pairs else 0
