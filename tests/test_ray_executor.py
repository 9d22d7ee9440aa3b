"""The Ray executor: the same rows as a local run, workers that die, an interrupt, and ray missing.

Runs on a Ray instance of this machine (``num_cpus=2``, no dashboard), started once for the module. The first test
compares a run of the bundled model with a local one; the others use methods that copy the input and workers that
load no model (:class:`NoModel`), so their time goes to Ray and to the workers' start. The doubles are sent to the
workers by value: the tests folder is not importable there.
"""

from __future__ import annotations

import math
import os
import sys
import time
import types

import bench_doubles
import numpy as np
import pytest
import torch
from bench_doubles import copy_method
from PIL import Image

from dragnext.bench.executors import RayExecutor, RayUnavailableError
from dragnext.bench.methods import MethodSpec, registry
from dragnext.bench.runner import FAILED, RESULTS, BenchError, LocalExecutor, read_results, run_benchmark_on
from dragnext.bench.suites import Sample, request_type, synthetic_suite
from dragnext.config import FAST_SETTINGS, PAPER
from dragnext.perceptual import SSIMDistance

try:
    import ray
except ImportError:
    ray = None

pytestmark = pytest.mark.slow  # a local Ray cluster per test

torch.set_num_threads(1)

needs_ray = pytest.mark.skipif(ray is None, reason='ray is not installed (pip install -e ".[ray]")')
TIMINGS = ("seconds", "peak_memory_mb")  # the columns that differ between runs
FAST = {**FAST_SETTINGS, "num_steps": 10}
STUB = types.SimpleNamespace(name="bundled", device=torch.device("cpu"))  # for local runs of the copy doubles


@pytest.fixture(scope="module")
def cluster():
    """A Ray instance with two CPUs: two workers of one thread each."""
    doubles = (sys.modules[__name__], bench_doubles)
    ray.init(num_cpus=2, include_dashboard=False)
    for module in doubles:
        ray.cloudpickle.register_pickle_by_value(module)
    yield ray
    for module in doubles:
        ray.cloudpickle.unregister_pickle_by_value(module)
    ray.shutdown()


class NoModel:
    """Stands in for ``ModelSettings`` where the methods are copy doubles: a worker starts in a third of the time."""

    def load(self):
        return STUB


def executor(**options) -> RayExecutor:
    """Two workers that load no model, for the copy doubles."""
    return RayExecutor(NoModel(), **{"workers": 2, **options})


def run(executor, samples, methods, out, configs=None):
    configs = configs or {method.name: PAPER for method in methods}
    return run_benchmark_on(executor, samples, methods, configs, out, SSIMDistance(), show_progress=False)


def by_pair(out) -> dict[tuple[str, str], dict]:
    return {(row["sample"], row["method"]): row for row in read_results(out / RESULTS)}


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def crash_once(marker):
    """A method that copies its input, but the first call of the run kills its worker's process."""

    def method(backbone, request, config, *, seed=0, progress=None):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # one call wins, whichever worker it is on
        except FileExistsError:
            return copy_method(backbone, request, config)
        os._exit(1)

    return method


def crash_on_rotate(backbone, request, config, *, seed=0, progress=None):
    """A method that kills its worker's process on every rotation, and copies the other samples."""
    if request_type(request) == "rotate":
        os._exit(1)
    return copy_method(backbone, request, config)


def interrupt() -> tuple:
    raise KeyboardInterrupt


def wait_for_free_cpus(count: float, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= count:
            return True
        time.sleep(0.2)
    return False


# ------------------------------------------------------------------------------------------ same rows


@needs_ray
def test_a_ray_run_writes_the_rows_and_outputs_of_a_local_run(cluster, tmp_path):
    from dragnext.models import load_backbone

    backbone = load_backbone("bundled", device="cpu")
    specs = registry(fast=True)
    methods = [specs["warp"], specs["identity"]]
    configs = {spec.name: spec.config(backbone, FAST) for spec in methods}
    samples = synthetic_suite(1)
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_benchmark_on(LocalExecutor(backbone), samples, methods, configs, local, SSIMDistance(), show_progress=False)
    stats = run(RayExecutor("bundled", device="cpu", workers=2), samples, methods, remote, configs)

    assert (stats.edits, stats.failed) == (8, 0)
    expected, got = by_pair(local), by_pair(remote)
    assert set(got) == set(expected) and len(read_results(remote / RESULTS)) == 8
    for pair, row in expected.items():
        assert row["status"] == "ok"
        differ = [key for key in row if key not in TIMINGS and not same(row[key], got[pair][key])]
        assert not differ, f"{pair}: {differ}"
        with Image.open(local / row["output"]) as a, Image.open(remote / got[pair]["output"]) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    assert (remote / FAILED).read_text() == "sample,method,reason\n"


# ------------------------------------------------------------------------------------------ faults


@needs_ray
def test_a_worker_that_dies_loses_only_its_sample_which_runs_again(cluster, tmp_path):
    marker = tmp_path / "crashed"
    method = MethodSpec("copy", crash_once(marker), "default")
    stats = run(executor(max_retries=2), synthetic_suite(1), [method], tmp_path / "out")
    assert marker.is_file()  # a worker did die
    rows = by_pair(tmp_path / "out")
    assert (stats.edits, stats.failed) == (4, 0)
    assert sorted(sample for sample, _ in rows) == sorted(sample.id for sample in synthetic_suite(1))
    assert all(row["status"] == "ok" and row["if_ed"] == pytest.approx(1.0) for row in rows.values())


@needs_ray
def test_a_sample_that_kills_every_worker_is_a_failed_row_after_its_retries(cluster, tmp_path):
    method = MethodSpec("copy", crash_on_rotate, "default")
    out = tmp_path / "out"
    stats = run(executor(max_retries=1), synthetic_suite(1), [method], out)
    rows = by_pair(out)
    assert (stats.edits, stats.failed) == (4, 1) and len(rows) == 4
    failed = rows[("rotate-000", "copy")]
    assert failed["status"] == "error" and failed["type"] == "rotate"
    assert failed["error"].startswith("WorkerLost: its Ray worker failed 2 times; last: ")
    assert "\n" not in failed["error"]
    assert (out / FAILED).read_text().splitlines()[1].startswith("rotate-000,copy,WorkerLost:")
    assert all(row["status"] == "ok" for pair, row in rows.items() if pair[0] != "rotate-000")


@needs_ray
def test_an_interrupt_keeps_the_finished_rows_frees_the_workers_and_a_local_run_resumes(cluster, tmp_path):
    samples = synthetic_suite(1)
    method = MethodSpec("copy", copy_method, "default")
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(executor(), [*samples[:3], Sample("interrupt", interrupt), samples[3]], [method], out)
    finished = read_results(out / RESULTS)
    assert len(finished) == 2 and all(row["status"] == "ok" for row in finished)  # the third was in progress
    assert (out / FAILED).is_file()
    assert wait_for_free_cpus(2), "the workers were not shut down"

    resumed = run(LocalExecutor(STUB), samples, [method], out)
    assert (resumed.edits, resumed.skipped) == (2, 2)
    assert sorted(sample for sample, _ in by_pair(out)) == sorted(sample.id for sample in samples)


@needs_ray
def test_a_finished_run_resumed_on_ray_starts_no_worker(cluster, tmp_path):
    samples, method = synthetic_suite(1)[:2], MethodSpec("copy", copy_method, "default")
    run(LocalExecutor(STUB), samples, [method], tmp_path)
    stats = run(executor(workers=3, cpus_per_worker=1), samples, [method], tmp_path)  # would not fit the cluster
    assert (stats.edits, stats.skipped) == (0, 2)


# ------------------------------------------------------------------------------------------ errors


@needs_ray
def test_workers_that_do_not_fit_the_cluster_are_refused_before_any_starts(cluster, tmp_path):
    with pytest.raises(BenchError, match="need more than the cluster has"):
        run(executor(workers=3, cpus_per_worker=1), synthetic_suite(1), [MethodSpec("copy", copy_method, "x")],
            tmp_path)
    assert not (tmp_path / RESULTS).exists()


@needs_ray
def test_a_model_the_workers_cannot_load_stops_the_run_with_its_reason(cluster, tmp_path):
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "unet" / "config.json").write_text("[]")  # not a JSON object
    bad = RayExecutor(str(model), device="cpu", workers=1)
    with pytest.raises(BenchError, match="could not start: ModelLoadError: could not load the model"):
        run(bad, synthetic_suite(1), [MethodSpec("copy", copy_method, "default")], tmp_path / "out")
    assert wait_for_free_cpus(2)


def test_without_ray_the_error_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(RayUnavailableError) as caught:
        RayExecutor("bundled", workers=2)
    assert isinstance(caught.value, BenchError)  # the CLI's "bad input"
    assert str(caught.value) == 'the Ray executor needs the ray package: pip install -e ".[ray]"'


@pytest.mark.parametrize(("options", "message"), [
    ({"workers": 0}, "--workers must be at least 1"),
    ({"gpus_per_worker": -1}, "--gpus-per-worker must be >= 0"),
])
def test_settings_that_cannot_work_are_refused(options, message):
    with pytest.raises(BenchError, match=message):
        RayExecutor("bundled", **options)


# ------------------------------------------------------------------------------------------------- the CLI


def test_the_cli_refuses_ray_flags_without_the_ray_executor(tmp_path, capsys):
    from dragnext.cli import main

    status = main(["bench", "--suite", "synthetic", "--out", str(tmp_path / "x"), "--workers", "2", "--quiet"])
    assert status == 2 and "--workers: only with --executor ray" in capsys.readouterr().err


@needs_ray
def test_the_cli_with_ray_writes_the_quality_columns_of_a_local_run(cluster, tmp_path):
    from dragnext.cli import main

    common = ["bench", "--suite", "synthetic", "--per-type", "1", "--methods", "warp", "--fast",
              "--set", "num_steps=10", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"]) == 0
    local = {row["sample"]: row for row in read_results(tmp_path / "local" / RESULTS)}
    remote = {row["sample"]: row for row in read_results(tmp_path / "ray" / RESULTS)}
    assert set(local) == set(remote) and len(local) == 4
    for sample, row in local.items():
        for key, value in row.items():
            if key not in TIMINGS:
                assert remote[sample][key] == value or (isinstance(value, float) and math.isnan(value)
                                                         and math.isnan(remote[sample][key])), (sample, key)
    assert '"executor": "ray (address local, workers 2' in (tmp_path / "ray" / "run.json").read_text()
