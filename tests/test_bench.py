"""The benchmark: suites, methods, runner (resume, failures), report, IF metrics and the cost comparison."""

from __future__ import annotations

import argparse
import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from bench_doubles import broken_sample, copy_method, failing_method
from PIL import Image

from dragnext.bench.cost import KINDS, recipe_counts
from dragnext.bench.memory import peak_rss_mb, reset_peak_rss
from dragnext.bench.methods import ABLATIONS, MAIN, MethodError, MethodSpec, resolve_methods
from dragnext.bench.report import length_pivot
from dragnext.bench.runner import RESULTS, BenchError, read_results, run_benchmark
from dragnext.bench.scoring import edit_regions, score_sample
from dragnext.bench.suites import Sample, SuiteError, load_suite, synthetic_suite
from dragnext.cli.bench import add_bench_parser
from dragnext.config import PAPER, STABLE_DIFFUSION
from dragnext.ground_truth import random_edit
from dragnext.instructions import save_instructions
from dragnext.metrics import image_fidelity
from dragnext.perceptual import SSIMDistance, load_distance

torch.set_num_threads(1)

FAST_ARGS = ["--fast", "--set", "num_steps=10", "--set", "pbsi_timesteps=1", "--set", "iterations=2", "--quiet"]


def bench(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    return args.run(args)


# ------------------------------------------------------------------------------------------ end to end (CLI)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Two synthetic scenes (a translate and a deform), ours (engine v2), few steps."""
    out = tmp_path_factory.mktemp("bench") / "run"
    status = bench("--suite", "synthetic", "--per-type", "1", "--limit", "2", "--methods", "dragnext",
                   "--out", str(out), *FAST_ARGS)
    return out, status


def test_a_small_suite_runs_end_to_end_and_writes_every_output(finished_run):
    out, status = finished_run
    assert status == 0
    rows = read_results(out / RESULTS)
    assert [(row["sample"], row["method"], row["status"]) for row in rows] == [
        ("translate-000", "dragnext", "ok"), ("deform-000", "dragnext", "ok")]
    row = rows[0]
    assert row["type"] == "translate" and row["perceptual"] == "1-SSIM"
    assert 0 <= row["if_ed"] <= 1 and 0 <= row["if_th"] <= 1 and 0 <= row["iou"] <= 1
    # one optimised timestep, which starts at the moved latent, its own target: the zero loss costs no pass
    assert row["seconds"] > 0 and row["backward"] == 0 and row["truncated_forward"] == 0
    assert row["peak_memory_mb"] > 0
    assert (out / row["output"]).is_file()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["info"]["perceptual"] == "1-SSIM"
    assert set(summary["methods"]["dragnext"]) == {"translate", "deform", "all"}
    assert summary["methods"]["dragnext"]["all"]["n"] == 2

    report = (out / "report.md").read_text()
    assert "1-SSIM" in report and "| dragnext | translate | 1 | 0 |" in report
    for kind in ("translate", "deform"):
        assert f"](grid_{kind}.png)" in report
        with Image.open(out / f"grid_{kind}.png") as grid:
            assert grid.width > grid.height > 0  # input | method | ground truth, in one row


def test_a_second_run_resumes_and_does_no_edits(finished_run, capsys):
    out, _ = finished_run
    before = (out / RESULTS).read_text()
    assert bench("--suite", "synthetic", "--per-type", "1", "--limit", "2", "--methods", "dragnext",
                 "--out", str(out), *FAST_ARGS) == 0
    assert capsys.readouterr().out.startswith("0 edits (0 failed), 2 already done")
    assert (out / RESULTS).read_text() == before


def test_report_only_runs_nothing_and_rewrites_the_report(finished_run, capsys):
    out, _ = finished_run
    before = (out / RESULTS).read_text()
    (out / "report.md").unlink()
    assert bench("--suite", "synthetic", "--per-type", "2", "--methods", "dragnext", "--out", str(out),
                 "--report-only", *FAST_ARGS) == 0
    assert capsys.readouterr().out.startswith("0 edits (0 failed)")
    assert (out / RESULTS).read_text() == before
    assert "| dragnext | translate | 1 | 0 |" in (out / "report.md").read_text()


def test_resuming_with_other_settings_is_refused(finished_run, capsys):
    out, _ = finished_run
    status = bench("--suite", "synthetic", "--per-type", "1", "--limit", "2", "--methods", "dragnext",
                   "--out", str(out), "--quiet", "--set", "num_steps=12", "--set", "pbsi_timesteps=1")
    assert status == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--suite", "synthetic", "--methods", "nope"], "unknown method 'nope'"),
    (["--suite", "/no/such/folder"], "not a folder"),
    (["--suite", "dragbench"], "needs --data"),
    (["--suite", "synthetic", "--set", "pbsi_timesteps=11", "--methods", "dragnext", "--fast"],
     "pbsi_timesteps (11) exceeds"),
])
def test_bad_input_is_a_one_line_error_with_status_2(tmp_path, capsys, argv, message):
    assert bench(*argv, "--out", str(tmp_path / "out"), "--quiet") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ runner, no model


def test_a_failing_sample_is_recorded_and_the_run_goes_on(tmp_path):
    backbone = types.SimpleNamespace(device=torch.device("cpu"))
    samples = [*synthetic_suite(1)[:2], Sample("broken", broken_sample)]
    methods = [MethodSpec("boom", failing_method, "default"), MethodSpec("copy", copy_method, "default")]
    configs = {"boom": PAPER, "copy": PAPER}
    stats = run_benchmark(backbone, samples, methods, configs, tmp_path, SSIMDistance(), show_progress=False)
    assert (stats.edits, stats.failed, stats.skipped) == (6, 4, 0)
    rows = {(row["sample"], row["method"]): row for row in read_results(tmp_path / RESULTS)}
    assert len(rows) == 6
    assert rows[("translate-000", "boom")]["status"] == "error"
    assert rows[("translate-000", "boom")]["error"] == "RuntimeError: injected failure"
    assert rows[("deform-000", "copy")]["status"] == "ok"
    assert rows[("deform-000", "copy")]["if_ed"] == pytest.approx(1.0)  # the input itself: nothing changed
    assert rows[("broken", "copy")]["error"] == "FileNotFoundError: image.png is missing"
    assert rows[("broken", "copy")]["type"] == "unknown"

    again = run_benchmark(backbone, samples, methods, configs, tmp_path, SSIMDistance(), show_progress=False)
    assert (again.edits, again.skipped) == (0, 6)
    retried = run_benchmark(backbone, samples, methods, configs, tmp_path, SSIMDistance(), retry_failed=True,
                            show_progress=False)
    assert (retried.edits, retried.failed, retried.skipped) == (4, 4, 2)
    assert len(read_results(tmp_path / RESULTS)) == 6


def test_a_run_scored_with_another_distance_is_not_mixed_in(tmp_path):
    backbone = types.SimpleNamespace(device=torch.device("cpu"))
    samples = synthetic_suite(1)[:1]
    methods = [MethodSpec("copy", copy_method, "default")]
    run_benchmark(backbone, samples, methods, {"copy": PAPER}, tmp_path, SSIMDistance(), show_progress=False)
    other = types.SimpleNamespace(name="LPIPS-alex", map=SSIMDistance().map)
    with pytest.raises(BenchError, match="never mix"):
        run_benchmark(backbone, samples, methods, {"copy": PAPER}, tmp_path, other, show_progress=False)


def test_a_row_cut_short_by_a_crash_is_dropped_and_run_again(tmp_path):
    backbone = types.SimpleNamespace(device=torch.device("cpu"))
    samples = synthetic_suite(1)[:2]
    methods = [MethodSpec("copy", copy_method, "default")]
    run_benchmark(backbone, samples, methods, {"copy": PAPER}, tmp_path, SSIMDistance(), show_progress=False)
    text = (tmp_path / RESULTS).read_text()
    (tmp_path / RESULTS).write_text(text[: text.index("\ndeform-000,") + 20])  # the last row, half written
    stats = run_benchmark(backbone, samples, methods, {"copy": PAPER}, tmp_path, SSIMDistance(), show_progress=False)
    assert stats.edits == 1
    assert [row["sample"] for row in read_results(tmp_path / RESULTS)] == ["translate-000", "deform-000"]


# ------------------------------------------------------------------------------------------ suites and methods


def test_synthetic_suite_covers_every_type_and_alternates_long_drags():
    samples = synthetic_suite(2)
    assert [s.id for s in samples] == ["translate-000", "deform-000", "rotate-000", "scale-000",
                                       "translate-001-long", "deform-001-long", "rotate-001-long", "scale-001-long"]
    request, truth = samples[6].load()
    assert truth.op_type == "rotate" and request.operations[0].type == "rotate"
    assert request is not samples[6].load()[0] and samples[6].load()[1].shape_index == truth.shape_index


def test_folder_suite_reads_instruction_files_and_skips_converter_sidecars(tmp_path):
    for seed, name in ((1, "a"), (2, "b/c")):
        (tmp_path / name).mkdir(parents=True)
        save_instructions(random_edit(seed, "translate").request, tmp_path / name / "instructions.json")
    (tmp_path / "b" / "c" / "conversion.json").write_text("{}")
    samples, _ = load_suite(str(tmp_path))
    assert [s.id for s in samples] == ["a", "b/c"]
    request, truth = samples[1].load()
    assert truth is None and request.operations[0].type == "translate"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SuiteError, match="no instruction files"):
        load_suite(str(empty))


def test_a_point_benchmark_is_converted_into_the_output_folder(tmp_path):
    sample = tmp_path / "data" / "cat_0"
    sample.mkdir(parents=True)
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(sample / "original.jpg")
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(sample / "mask.png")
    (sample / "points.json").write_text(json.dumps({"points": [[10, 10], [20, 12]]}))
    samples, description = load_suite("drag100", data=tmp_path / "data", out_dir=tmp_path / "out")
    assert [s.id for s in samples] == ["cat_0"]
    assert (tmp_path / "out" / "inputs" / "drag100" / "cat_0" / "instructions.json").is_file()
    assert "converted 1 of 1" in description


def test_method_names_and_groups():
    assert [m.name for m in resolve_methods("main")] == list(MAIN)
    assert [m.name for m in resolve_methods("identity,ablations,identity")] == ["identity", *ABLATIONS]
    with pytest.raises(MethodError, match="known: dragnext"):
        resolve_methods("dragnext,dragdiffusion")


def test_method_settings_on_the_bundled_model():
    from dragnext.models import load_backbone

    backbone = load_backbone("bundled", device="cpu")
    specs = {m.name: m for m in resolve_methods("all")}
    paper = specs["paper"].config(backbone)
    # the paper's settings, but for the 10th self-attention layer: the model has 7
    assert paper == PAPER.override(mutual_attention_start_layer=3)
    ours = specs["dragnext"].config(backbone)
    assert ours.strength == 0.3 and ours.hard_mask and ours.start == "moved" and ours.deformation == "field"
    # user overrides apply to all, a method's defining settings win
    assert specs["ablation-pbsi4"].config(backbone, {"pbsi_timesteps": 2, "num_steps": 20}).pbsi_timesteps == 4
    assert specs["ablation-no-fill"].config(backbone, {"fill": "nearest"}).fill == "none"
    assert specs["ablation-no-field"].config(backbone).deformation == "translate"
    assert specs["ablation-no-warm-start"].config(backbone).start == "unedited"
    assert specs["ablation-full-res-loss"].config(backbone).feature_scale == 1.0
    assert specs["identity"].config(backbone).pbsi_timesteps == 0
    assert specs["copy"].config(backbone).fill == "none" and specs["warp"].config(backbone).fill == ours.fill
    # every ablation differs from ours in exactly the settings it names
    for name in ABLATIONS:
        config = specs[name].config(backbone)
        changed = {key for key in specs[name].changes if getattr(config, key) != getattr(ours, key)}
        assert changed == set(specs[name].changes), name


# ------------------------------------------------------------------------------------------ metrics


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image.astype(float) + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def edit():
    return random_edit(1000, "translate")


def test_the_fallback_distance_is_zero_on_identical_images_and_grows_with_the_perturbation(edit):
    distance = load_distance("ssim")
    image = edit.request.image
    assert np.all(distance.map(image, image) == 0)
    means = [distance.map(image, noisy(image, sigma)).mean() for sigma in (2, 8, 32)]
    assert 0 < means[0] < means[1] < means[2] <= 1


def test_auto_falls_back_to_ssim_here_and_lpips_is_refused_without_weights():
    from dragnext.perceptual import lpips_available

    available, reason = lpips_available()
    if available:
        pytest.skip("LPIPS weights are installed here")
    assert load_distance("auto").name == "1-SSIM"
    with pytest.raises(RuntimeError, match="LPIPS cannot be used"):
        load_distance("lpips")
    assert reason


def test_lpips_is_used_when_available(monkeypatch, edit):
    """The LPIPS path with a stand-in for the ``lpips`` package (not installed here): its spatial map is used."""
    from dragnext import perceptual

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, spatial, verbose):
            super().__init__()
            assert (net, spatial) == ("alex", True)

        def forward(self, a, b):
            assert a.min() >= -1 and a.max() <= 1  # LPIPS wants [-1, 1]
            return (a - b).abs().mean(dim=1, keepdim=True)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=FakeLPIPS))
    monkeypatch.setattr(perceptual, "lpips_available", lambda: (True, ""))
    distance = load_distance("auto")
    assert distance.name == "LPIPS-alex"
    image = edit.request.image
    assert distance.map(image, image).shape == image.shape[:2]
    assert distance.map(image, noisy(image, 8)).mean() > 0


def test_image_fidelity_is_perfect_for_the_ideal_edit_and_orders_known_perturbations(edit):
    request = edit.request
    handle, moved, arrived = edit_regions(request)
    ideal = np.where(moved[..., None], arrived, request.image)
    distance = SSIMDistance().map
    perfect = image_fidelity(request.image, ideal, arrived, handle, moved, distance)
    assert perfect["if_th"] == pytest.approx(1.0)
    # (its IF_ed is a little below 1: SSIM's 7x7 windows next to the moved region see the change)

    # content that should have arrived: the ideal edit, then noisier versions of it, then no edit at all
    scores = [image_fidelity(request.image, output, arrived, handle, moved, distance)
              for output in (ideal, noisy(ideal, 8), noisy(ideal, 32), request.image)]
    if_th = [s["if_th"] for s in scores]
    assert if_th[0] > if_th[1] > if_th[2] and if_th[0] > if_th[3]
    if_ed = [s["if_ed"] for s in scores[:3]]
    assert if_ed[0] > if_ed[1] > if_ed[2]
    # the content that should have left is still there without an edit, less so after the ideal one
    unedited = image_fidelity(request.image, request.image, arrived, handle, moved, distance)
    assert unedited["if_hh"] == pytest.approx(1.0) and perfect["if_hh"] < unedited["if_hh"]
    assert unedited["if_ed"] == pytest.approx(1.0)  # identical images: nothing changed where nothing should


def test_score_sample_adds_the_ground_truth_on_synthetic_scenes(edit):
    expected = (edit.expected_image * 255).round().astype(np.uint8)
    good = score_sample(edit.request, expected, SSIMDistance(), edit)
    bad = score_sample(edit.request, edit.request.image, SSIMDistance(), edit)
    assert good["iou"] > 0.9 > bad["iou"] and good["centroid_error"] < 1.0 < bad["centroid_error"]
    assert good["if_th"] > bad["if_th"] and good["psnr"] > bad["psnr"]
    assert math.isnan(score_sample(edit.request, expected, SSIMDistance()).get("iou", math.nan))


# ------------------------------------------------------------------------------------------ cost


def test_recipe_counts_follow_the_presets_and_dragdiffusion():
    counts = recipe_counts()
    assert list(counts) == ["v2", "v2-cached-lora", "v2-no-lora", "paper", "dragdiffusion"]
    assert counts["paper"] == {"lora_step": 80, "forward": 38, "features": 5, "features_backward": 50,
                               "forward_pair": 38}
    assert counts["dragdiffusion"] == {"lora_step": 80, "forward": 39, "forward_backward": 80, "forward_pair": 38}
    v2 = STABLE_DIFFUSION
    steps = v2.inversion_steps
    # per optimised timestep the moved start's features, then K iterations, all native; the first timestep
    # costs nothing (the moved start is its own target)
    optimised = v2.pbsi_timesteps - 1
    assert counts["v2"] == {"lora_step": v2.lora_steps, "forward": steps, "features_native": optimised,
                            "features_backward_native": optimised * v2.iterations, "forward_pair": steps}
    assert counts["v2-cached-lora"]["lora_step"] == counts["v2-no-lora"]["lora_step"] == 0


def test_cost_only_on_a_tiny_unet(tmp_path, capsys):
    assert bench("--cost-only", "--cost-unet", "tiny", "--cost-size", "64", "--cost-repeats", "1", "--device", "cpu",
                 "--out", str(tmp_path)) == 0
    captured = capsys.readouterr()
    assert "time ratio to DragDiffusion: v2 " in captured.out and "cost: timing lora_step (8/8)" in captured.err
    report = json.loads((tmp_path / "cost.json").read_text())
    assert report["unet"] == "tiny" and report["image_size"] == 64
    assert set(report["kinds"]) == set(KINDS)
    assert all(kind["seconds"] > 0 for kind in report["kinds"].values())
    assert report["time_ratio"] == pytest.approx(report["seconds"]["v2"] / report["seconds"]["dragdiffusion"])
    assert report["ratios"]["paper"]["drag"] == pytest.approx(
        report["drag_seconds"]["paper"] / report["drag_seconds"]["dragdiffusion"])
    # a cached LoRA removes only the LoRA steps
    kinds = report["kinds"]
    assert report["seconds"]["v2"] - report["seconds"]["v2-cached-lora"] == pytest.approx(
        report["counts"]["v2"]["lora_step"] * kinds["lora_step"]["seconds"])
    markdown = (tmp_path / "cost.md").read_text()
    assert "| v2-no-lora |" in markdown and "time ratio" in markdown
    if reset_peak_rss():  # Linux: the CPU peak RSS is measured per kind, weights and interpreter included
        assert all(kind["peak_mb"] > 50 for kind in report["kinds"].values())
        assert report["ratios"]["v2"]["peak"] is not None


def test_peak_rss_resets_to_the_current_size():
    if not reset_peak_rss():
        pytest.skip("this system does not let a process reset its peak RSS (/proc/self/clear_refs)")
    ballast = bytearray(200 * 2**20)
    ballast[:: 4096] = b"x" * len(range(0, len(ballast), 4096))  # touch every page so it is resident
    high = peak_rss_mb()
    del ballast
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 150


def test_the_length_pivot_splits_each_type_into_ordinary_and_long_edits():
    def row(sample, method, iou, status="ok"):
        return {"sample": sample, "type": sample.split("-")[0], "method": method, "status": status, "iou": iou}

    rows = [row("translate-000", "a", 0.9), row("translate-001-long", "a", 0.5), row("translate-003-long", "a", 0.7),
            row("rotate-000", "a", 0.8), row("rotate-001-long", "a", math.nan),
            row("translate-000", "b", 0.2, status="error"), row("translate-001-long", "b", 0.1)]
    pivot = length_pivot(rows, ["a", "b"], "iou")
    assert list(pivot["a"]) == ["translate", "translate-long", "rotate", "rotate-long"]
    assert pivot["a"]["translate-long"] == pytest.approx(0.6) and pivot["a"]["rotate-long"] is None
    assert pivot["b"]["translate"] is None and pivot["b"]["translate-long"] == pytest.approx(0.1)
    assert length_pivot([r for r in rows if not r["sample"].endswith("-long")], ["a"], "iou") == {}


def test_timed_passes_are_repriced_with_todays_counts():
    from dragnext.bench.cost import KINDS, recipe_counts, repriced

    document = {"unet": "sd15", "image_size": 512, "device": "cuda", "dtype": "float16", "repeats": 10,
                "memory": "peak", "kinds": {kind: {"seconds": 0.1 * (i + 1), "peak_mb": 100.0 * (i + 1)}
                                            for i, kind in enumerate(KINDS)}}
    report = repriced(document)
    assert report.counts == recipe_counts()
    seconds = {kind: 0.1 * (i + 1) for i, kind in enumerate(KINDS)}
    assert report.seconds["v2"] == pytest.approx(sum(n * seconds[k] for k, n in recipe_counts()["v2"].items()))
    del document["kinds"]["lora_step"]
    with pytest.raises(ValueError, match="lack pass kinds the recipes use now: lora_step"):
        repriced(document)


def test_a_seed_out_of_range_is_refused_before_the_model_loads(tmp_path, capsys):
    assert bench("--suite", "synthetic", "--seed", str(2**63), "--model", "/nonexistent/folder",
                 "--out", str(tmp_path / "run")) == 2
    assert "--seed: 9223372036854775808 is not in [0, 2**63)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
