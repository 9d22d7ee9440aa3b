"""The benchmark with failing and hostile samples: every failure is a row of results.csv and a line of failed.csv,
the run goes on, an interrupt keeps the finished rows, and the exit status says whether anything failed.

No model is loaded: the methods here copy the input or raise, and the CLI tests stand in a fake backbone.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_doubles import broken_sample, copy_method, failing_method, interrupted_on_edit
from PIL import Image

from dragnext.bench.methods import MethodSpec
from dragnext.bench.runner import FAILED, RESULTS, read_results, run_benchmark
from dragnext.bench.suites import Sample, load_suite, synthetic_suite
from dragnext.cli import bench as bench_cli
from dragnext.cli.bench import add_bench_parser
from dragnext.cli.common import EXIT_INTERRUPTED, EXIT_SOME_FAILED
from dragnext.config import PAPER
from dragnext.ground_truth import random_edit
from dragnext.instructions import save_instructions
from dragnext.perceptual import SSIMDistance

torch.set_num_threads(1)

BACKBONE = types.SimpleNamespace(name="bundled", device=torch.device("cpu"))


COPY = MethodSpec("copy", copy_method, "default")
BOOM = MethodSpec("boom", failing_method, "default")


def failed_rows(out: Path) -> list[list[str]]:
    with open(out / FAILED, newline="", encoding="utf-8") as stream:
        header, *rows = csv.reader(stream)
    assert header == ["sample", "method", "reason"]
    return rows


# ------------------------------------------------------------------------------------------ the runner


def test_every_failure_is_listed_in_failed_csv(tmp_path):
    samples = [*synthetic_suite(1)[:2], Sample("broken", broken_sample)]
    configs = {"boom": PAPER, "copy": PAPER}
    stats = run_benchmark(BACKBONE, samples, [BOOM, COPY], configs, tmp_path, SSIMDistance(), show_progress=False)
    assert (stats.edits, stats.failed) == (6, 4)
    errors = [(row["sample"], row["method"], row["error"]) for row in read_results(tmp_path / RESULTS)
              if row["status"] == "error"]
    assert [tuple(row) for row in failed_rows(tmp_path)] == errors
    assert ("translate-000", "boom", "RuntimeError: injected failure") in errors
    assert ("broken", "copy", "FileNotFoundError: image.png is missing") in errors

    retried = run_benchmark(BACKBONE, samples, [BOOM, COPY], configs, tmp_path, SSIMDistance(), retry_failed=True,
                            show_progress=False)
    assert retried.failed == 4 and len(failed_rows(tmp_path)) == 4  # rewritten, not appended to


def test_an_interrupt_keeps_every_finished_row_and_the_run_resumes(tmp_path):
    samples = [*synthetic_suite(1), Sample("broken", broken_sample)]
    method = MethodSpec("copy", interrupted_on_edit(3), "default")
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(BACKBONE, [samples[4], *samples[:4]], [method], {"copy": PAPER}, tmp_path, SSIMDistance(),
                      show_progress=False)
    rows = read_results(tmp_path / RESULTS)
    assert [(row["sample"], row["status"]) for row in rows] == [
        ("broken", "error"), ("translate-000", "ok"), ("deform-000", "ok")]
    assert failed_rows(tmp_path) == [["broken", "copy", "FileNotFoundError: image.png is missing"]]

    resumed = run_benchmark(BACKBONE, samples, [method], {"copy": PAPER}, tmp_path, SSIMDistance(),
                            show_progress=False)
    assert (resumed.edits, resumed.skipped) == (2, 3)  # the pair in progress and the one after it
    assert len(read_results(tmp_path / RESULTS)) == 5


def test_a_row_missing_cells_is_dropped_and_run_again(tmp_path):
    samples = synthetic_suite(1)[:2]
    run_benchmark(BACKBONE, samples, [COPY], {"copy": PAPER}, tmp_path, SSIMDistance(), show_progress=False)
    lines = (tmp_path / RESULTS).read_text().splitlines()
    cut = ",".join(lines[-1].split(",")[:5])  # sample, type, method, status "ok", error: the scores lost
    (tmp_path / RESULTS).write_text("\n".join([*lines[:-1], cut]) + "\n")
    assert [row["sample"] for row in read_results(tmp_path / RESULTS)] == ["translate-000"]
    stats = run_benchmark(BACKBONE, samples, [COPY], {"copy": PAPER}, tmp_path, SSIMDistance(), show_progress=False)
    assert stats.edits == 1


# ------------------------------------------------------------------------------------------ suites


def _dragbench_sample(folder: Path, points, mask_size=(30, 40)) -> None:
    folder.mkdir(parents=True)
    mask = np.ones(mask_size, np.uint8)
    (folder / "meta_data.pkl").write_bytes(pickle.dumps({"prompt": "p", "points": points, "mask": mask}))
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(folder / "original_image.png")


def test_a_sample_that_fails_to_convert_is_a_failed_sample_of_the_suite(tmp_path):
    data = tmp_path / "data"
    _dragbench_sample(data / "cat" / "a", [[5, 5], [9, 9]])
    _dragbench_sample(data / "cat" / "b", [[10**399, 5], [9, 9]])  # a 400-digit coordinate
    _dragbench_sample(data / "cat" / "c", [[5, 5], [9, 9]], mask_size=(10, 10))
    _dragbench_sample(data / "dog" / "d", [[6, 6], [9, 9]])
    out = tmp_path / "out"
    samples, description = load_suite("dragbench", data=data, out_dir=out)
    assert [sample.id for sample in samples] == ["cat/a", "cat/b", "cat/c", "dog/d"]
    assert "converted 2 of 4" in description and "2 failed" in description

    stats = run_benchmark(BACKBONE, samples, [COPY], {"copy": PAPER}, out, SSIMDistance(), show_progress=False)
    assert (stats.edits, stats.failed) == (4, 2)
    failures = {sample: reason for sample, _, reason in failed_rows(out)}
    assert list(failures) == ["cat/b", "cat/c"]
    assert failures["cat/b"].startswith("ConversionError: points[0] (handle of pair 0): coordinates must be finite")
    assert failures["cat/c"] == "ConversionError: mask: mask is 10x10 but the image is 40x30"


def test_a_folder_suite_skips_hidden_folders(tmp_path):
    for name in ("a", ".a.0123456789abcdef.partial", ".git/x"):
        (tmp_path / name).mkdir(parents=True)
        save_instructions(random_edit(1, "translate").request, tmp_path / name / "instructions.json")
    samples, _ = load_suite(str(tmp_path))
    assert [sample.id for sample in samples] == ["a"]


# ------------------------------------------------------------------------------------------ the command


def bench(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    return args.run(args)


@pytest.fixture
def fake_model(monkeypatch):
    """`dragnext bench` with a stand-in backbone and the methods ``copy`` (returns the input) and ``boom``
    (raises): the command's bookkeeping and exit status, without loading a model."""
    import dragnext.editor

    def methods(names, fast=False):
        known = {"copy": COPY, "boom": BOOM}
        return [known[name] for name in names.split(",")]

    monkeypatch.setattr(bench_cli, "load_model", lambda *args: BACKBONE)
    monkeypatch.setattr(bench_cli, "resolve_methods", methods)
    monkeypatch.setattr(dragnext.editor, "check_config", lambda backbone, config: None)


def _instruction_folder(folder: Path) -> Path:
    for seed, name in ((1, "a"), (2, "b")):
        (folder / name).mkdir(parents=True)
        save_instructions(random_edit(seed, "translate").request, folder / name / "instructions.json")
    (folder / "c").mkdir()
    (folder / "c" / "instructions.json").write_text(json.dumps({"image": "/nonexistent.png", "operations": []}))
    return folder


def test_the_exit_status_says_whether_pairs_failed(tmp_path, capsys, fake_model):
    suite = _instruction_folder(tmp_path / "suite")
    out = tmp_path / "out"
    argv = ["--suite", str(suite), "--methods", "copy", "--out", str(out), "--quiet", "--grid-samples", "0"]
    assert bench(*argv) == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    assert captured.out.startswith("3 edits (1 failed), 0 already done; 1 failed pairs in all, listed in "
                                   f"{out / FAILED}")
    assert [row[:2] for row in failed_rows(out)] == [["c", "copy"]]
    assert "## Failed (1, all listed in [failed.csv](failed.csv))" in (out / "report.md").read_text()

    assert bench(*argv) == EXIT_SOME_FAILED  # resumed: nothing to do, the failure is still there
    assert capsys.readouterr().out.startswith("0 edits (0 failed), 3 already done; 1 failed pairs in all")
    assert bench(*argv, "--report-only") == EXIT_SOME_FAILED

    (suite / "c" / "instructions.json").unlink()
    (suite / "c").rmdir()
    clean_out = tmp_path / "clean"
    clean = ["--suite", str(suite), "--methods", "copy", "--out", str(clean_out), "--quiet", "--grid-samples", "0"]
    assert bench(*clean) == 0
    assert failed_rows(clean_out) == []
    assert bench("--suite", str(suite), "--methods", "boom", "--out", str(tmp_path / "boom"), "--quiet",
                 "--grid-samples", "0") == 1  # every edit of the run failed


def test_ctrl_c_in_the_command_keeps_the_rows_and_says_how_to_resume(tmp_path, capsys, fake_model, monkeypatch):
    suite = _instruction_folder(tmp_path / "suite")
    monkeypatch.setattr(bench_cli, "resolve_methods",
                        lambda names, fast=False: [MethodSpec("copy", interrupted_on_edit(2), "default")])
    out = tmp_path / "out"
    assert bench("--suite", str(suite), "--out", str(out), "--quiet") == EXIT_INTERRUPTED
    assert "interrupted; the finished pairs are kept in" in capsys.readouterr().err
    assert [row["sample"] for row in read_results(out / RESULTS)] == ["a"]
    assert (out / FAILED).is_file()


def test_the_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        bench("--help")
    text = capsys.readouterr().out
    assert "exit status:" in text and f"  {EXIT_SOME_FAILED}    some pairs failed" in text
