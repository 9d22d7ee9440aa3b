"""Hostile and odd settings: every number finite and in range, seeds, devices, steps the scheduler cannot take,
malformed model folders, and ``--deterministic``. Each is refused with one line before a model loads."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from dragnext.cli import main
from dragnext.config import (
    BUNDLED_DIR,
    PRESETS,
    ConfigError,
    EditConfig,
    check_seed,
    max_num_steps,
    preset_name_for_model,
)
from dragnext.demo import example_edits
from dragnext.instructions import save_instructions

# A model that does not exist: a command that got as far as loading it would exit 1, not 2.
NO_MODEL = "/nonexistent/model/folder"


@pytest.fixture
def instructions(tmp_path: Path) -> Path:
    """A small valid request on a bundled-model scene (64 x 64)."""
    return save_instructions(example_edits()[0].request, tmp_path / "request" / "instructions.json")


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def assert_one_line_error(capsys, status: int, expected: str, code: int = 2) -> str:
    err = capsys.readouterr().err
    assert status == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dragnext: error: ")
    assert expected in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------ EditConfig

BAD_SETTINGS = [
    ("strength", math.nan, "strength must be a finite number in (0, 1], got nan"),
    ("strength", math.inf, "strength must be a finite number in (0, 1], got inf"),
    ("strength", -math.inf, "strength"),
    ("strength", 10**400, "strength"),  # too large for a float: no OverflowError
    ("strength", 0.0, "strength"),
    ("learning_rate", math.inf, "learning_rate must be a finite number in (0, 1], got inf"),
    ("learning_rate", math.nan, "learning_rate"),
    ("learning_rate", 0.0, "learning_rate"),
    ("learning_rate", 2.0, "learning_rate"),
    ("lambda_editable", math.nan, "lambda_editable must be a finite number in [0, 1000], got nan"),
    ("lambda_editable", math.inf, "lambda_editable"),
    ("lambda_editable", -0.1, "lambda_editable"),
    ("num_steps", 0, "num_steps must be an integer in [1, 1000], got 0"),
    ("num_steps", 1001, "num_steps"),
    ("num_steps", 10**400, "num_steps"),
    ("num_steps", 25.0, "num_steps"),
    ("num_steps", True, "num_steps"),
    ("iterations", 0, "iterations"),
    ("iterations", 100_000, "iterations must be an integer in [1, 1000], got 100000"),
    ("pbsi_timesteps", -1, "pbsi_timesteps"),
    ("pbsi_timesteps", 10**6, "pbsi_timesteps"),
    ("feature_scale", math.nan, "feature_scale must be a finite number in (0, 1] or None, got nan"),
    ("feature_scale", 0.0, "feature_scale"),
    ("early_stop", math.nan, "early_stop"),
    ("early_stop", 1.0, "early_stop"),
    ("lora_learning_rate", math.inf, "lora_learning_rate"),
    ("lora_rank", 0, "lora_rank"),
    ("lora_steps", -1, "lora_steps"),
    ("lora_steps", 10**9, "lora_steps"),
    ("auto_editable_radius", -1, "auto_editable_radius"),
    ("auto_editable_radius", 10**9, "auto_editable_radius"),
    ("mutual_attention_start_layer", 0, "mutual_attention_start_layer"),
    ("mutual_attention_start_step", -1, "mutual_attention_start_step"),
    ("hard_mask", "yes", "hard_mask must be true or false"),
    ("feature_blocks", (), "feature_blocks"),
    ("feature_blocks", ("",), "feature_blocks"),
    ("feature_blocks", ["up_blocks.1"], "feature_blocks"),  # a list would make the frozen config unhashable
    ("eta_span", "sometimes", "eta_span"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_SETTINGS,
                         ids=[f"{name}={str(value)[:12]}" for name, value, _ in BAD_SETTINGS])
def test_a_bad_setting_is_one_config_error_naming_it(name, value, expected):
    with pytest.raises(ConfigError) as caught:
        EditConfig().override(**{name: value})
    message = str(caught.value)
    assert message.startswith(f"EditConfig: {name}")
    assert expected in message
    assert "\n" not in message and len(message) < 200  # a 400-digit number is not quoted in full


def test_a_strength_that_inverts_no_step_is_refused():
    with pytest.raises(ConfigError, match="inverts no step"):
        EditConfig(num_steps=3, strength=0.1)


def test_every_preset_is_valid_and_its_bounds_allow_the_paper():
    for presets in PRESETS.values():
        for config in presets.values():
            assert config == EditConfig(**dataclasses.asdict(config))
    EditConfig(num_steps=1000, iterations=1000, learning_rate=1.0, strength=1.0, pbsi_timesteps=1000)


def test_guidance_scale_is_gone():
    assert "guidance_scale" not in {f.name for f in dataclasses.fields(EditConfig)}
    with pytest.raises(ConfigError, match="unknown EditConfig setting"):
        EditConfig().override(guidance_scale=1.0)


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, 1.5, True, "1"])
def test_check_seed_refuses_seeds_outside_0_to_2_63(seed):
    with pytest.raises(ConfigError, match=r"seed: must be an integer in \[0, 2\*\*63\)"):
        check_seed(seed)


def test_check_seed_accepts_numpy_and_the_largest_seed():
    assert check_seed(np.int64(7)) == 7
    assert check_seed(2**63 - 1) == 2**63 - 1


# ------------------------------------------------------------------------------------------ steps and the scheduler

SD_SCHEDULER = {"num_train_timesteps": 1000, "steps_offset": 1, "timestep_spacing": "leading"}
BUNDLED_SCHEDULER = json.loads((BUNDLED_DIR / "scheduler" / "scheduler_config.json").read_text())


@pytest.mark.parametrize("scheduler_config", [SD_SCHEDULER, BUNDLED_SCHEDULER, {"num_train_timesteps": 100},
                                              {**SD_SCHEDULER, "timestep_spacing": "trailing"}],
                         ids=["sd", "bundled", "short", "trailing"])
def test_max_num_steps_is_what_ddim_can_take(scheduler_config):
    """At the bound every timestep is below the training timesteps; one more step, and one is not (or diffusers
    refuses it): the bound is exact."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config({**scheduler_config, "beta_schedule": "linear"})
    limit = max_num_steps(scheduler_config)
    scheduler.set_timesteps(limit)
    assert int(scheduler.timesteps.max()) < scheduler_config["num_train_timesteps"]
    try:
        scheduler.set_timesteps(limit + 1)
    except ValueError:
        return
    assert int(scheduler.timesteps.max()) >= scheduler_config["num_train_timesteps"]


def test_check_config_bounds_steps_by_the_models_scheduler(tiny_sd):
    from dragnext.editor import check_config

    fits = EditConfig(num_steps=999, feature_blocks=("up_blocks.0",), mutual_attention_start_layer=1)
    check_config(tiny_sd.backbone, fits)
    with pytest.raises(ConfigError, match=r"num_steps: 1000 is more than this model's scheduler can take \(999"):
        check_config(tiny_sd.backbone, fits.override(num_steps=1000))


def fake_model_folder(folder: Path, unet_config, scheduler_config) -> Path:
    """A model folder with configs and no weights: enough for everything that runs before loading."""
    for name, document in (("unet/config.json", unet_config), ("scheduler/scheduler_config.json", scheduler_config)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(document if isinstance(document, str) else json.dumps(document))
    return folder


def test_steps_a_local_models_scheduler_cannot_take_are_refused_before_loading(instructions, out_dir, tmp_path,
                                                                               capsys):
    model = fake_model_folder(tmp_path / "model", {"_class_name": "UNet2DConditionModel"},
                              {"_class_name": "DDIMScheduler", **SD_SCHEDULER})
    output = out_dir / "edited.png"
    status = main(["edit", str(instructions), "-o", str(output), "--model", str(model), "--steps", "1000", "--quiet"])
    assert_one_line_error(capsys, status, "num_steps: 1000 is more than this model's scheduler can take (999")
    assert not output.exists()


# ------------------------------------------------------------------------------------------ the CLI

CLI_BAD_SETTINGS = [
    (["--strength", "nan"], "strength must be a finite number"),
    (["--strength", "inf"], "strength must be a finite number"),
    (["--lr", "inf"], "learning_rate must be a finite number"),
    (["--set", "lambda_editable=nan"], "lambda_editable must be a finite number"),
    (["--set", "feature_scale=nan"], "feature_scale"),
    (["--steps", "0"], "num_steps"),
    (["--steps", "99999999999999999999"], "num_steps"),
    (["--iterations", "1000000"], "iterations"),
    (["--pbsi-timesteps", "-3"], "pbsi_timesteps"),
    (["--seed", "-1"], "--seed: -1 is not in [0, 2**63)"),
    (["--seed", str(2**63)], "--seed: 9223372036854775808 is not in [0, 2**63)"),
    (["--seed", str(2**64)], "--seed"),
    (["--device", "meta"], "--device meta: not a device an edit can run on"),
    (["--device", "xyz"], "--device xyz"),
    (["--device", "cuda:x"], "--device cuda:x"),
    (["--set", "guidance_scale=1"], "--set: expected KEY=VALUE"),
]


@pytest.mark.parametrize(("extra", "expected"), CLI_BAD_SETTINGS, ids=[" ".join(c[0])[:30] for c in CLI_BAD_SETTINGS])
def test_a_bad_setting_on_the_cli_exits_2_before_the_model_loads(instructions, out_dir, capsys, extra, expected):
    output = out_dir / "edited.png"
    status = main(["edit", str(instructions), "-o", str(output), "--model", NO_MODEL, "--quiet", *extra])
    assert_one_line_error(capsys, status, expected)
    assert list(out_dir.iterdir()) == []


def test_a_cuda_device_without_cuda_exits_2(instructions, out_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    status = main(["edit", str(instructions), "-o", str(out_dir / "edited.png"), "--model", NO_MODEL, "--quiet",
                   "--device", "cuda:1"])
    assert_one_line_error(capsys, status, "--device cuda:1: no CUDA device is available here")
    assert list(out_dir.iterdir()) == []


def test_demo_refuses_a_meta_device_before_loading(tmp_path, capsys):
    output = tmp_path / "demo" / "demo.png"
    status = main(["demo", "-o", str(output), "--device", "meta", "--quiet"])
    assert_one_line_error(capsys, status, "--device meta")
    assert not output.parent.exists()


# ------------------------------------------------------------------------------------------ malformed model folders

MALFORMED_CONFIGS = [
    ("empty-list", "[]", "must hold a JSON object, got list"),
    ("string", '"stable-diffusion-v1-5/stable-diffusion-v1-5"', "must hold a JSON object, got str"),  # not a hub id
    ("null", "null", "must hold a JSON object, got NoneType"),
    ("truncated", '{"_class_name":', "is not valid JSON"),
    ("not-utf8", b"\xff\xfe{}", "is not valid JSON"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in MALFORMED_CONFIGS],
                         ids=[c[0] for c in MALFORMED_CONFIGS])
@pytest.mark.parametrize("which", ["unet/config.json", "scheduler/scheduler_config.json"])
def test_a_malformed_model_config_is_one_model_load_error(tmp_path, monkeypatch, which, text, expected):
    from dragnext.models import ModelLoadError, load_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a config read as a hub id must not reach the network
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_DIR, folder)
    path = folder / which
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert preset_name_for_model(str(folder)) in ("bundled", "stable-diffusion")  # decided, never raised
    with pytest.raises(ModelLoadError) as caught:
        load_backbone(str(folder), device="cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and expected in message


def test_a_config_with_wrong_shapes_is_one_model_load_error(tmp_path):
    """A JSON object that diffusers accepts but cannot build (TypeError deep inside its constructor)."""
    from dragnext.models import ModelLoadError, load_backbone

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_DIR, folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    config["down_block_types"] = 5
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="could not load the pixel-space model"):
        load_backbone(str(folder), device="cpu")


def test_the_cli_reports_a_malformed_model_in_one_line(instructions, out_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = fake_model_folder(tmp_path / "model", "[]", BUNDLED_SCHEDULER)
    output = out_dir / "edited.png"
    status = main(["edit", str(instructions), "-o", str(output), "--model", str(folder), "--quiet"])
    line = assert_one_line_error(capsys, status, "must hold a JSON object, got list", code=2)
    assert "unet/config.json" in line
    assert not output.exists()


def test_a_model_path_that_is_not_a_folder_is_refused_before_any_library_loads(instructions, out_dir, tmp_path,
                                                                                capsys):
    """Checked without diffusers, transformers or torch: in a fresh interpreter none of them gets imported."""
    import subprocess
    import sys

    not_a_folder = tmp_path / "weights.safetensors"
    not_a_folder.write_bytes(b"not a model")
    output = out_dir / "edited.png"
    status = main(["edit", str(instructions), "-o", str(output), "--model", str(not_a_folder), "--quiet"])
    assert "is not a folder" in assert_one_line_error(capsys, status, "--model", code=2)
    assert not output.exists()
    script = (
        "import sys\nfrom dragnext.cli import main\n"
        f"status = main(['edit', {str(instructions)!r}, '-o', {str(output)!r}, '--model', {str(not_a_folder)!r}])\n"
        "loaded = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "print(status, loaded)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "2 []", run.stdout + run.stderr


# ------------------------------------------------------------------------------------------ determinism


@pytest.fixture
def restore_torch_settings(monkeypatch):
    """``--deterministic`` is process-wide: put torch back as it was for the tests after this one."""
    import torch

    threads, enabled = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored afterwards by monkeypatch
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(enabled)


def test_make_deterministic_pins_threads_and_algorithms(restore_torch_settings):
    import torch

    from dragnext.determinism import make_deterministic

    make_deterministic(threads=1)
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ValueError, match="threads"):
        make_deterministic(threads=0)


def test_the_deterministic_context_restores_the_settings():
    import torch

    from dragnext.determinism import deterministic

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with deterministic(threads=1):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


@pytest.mark.slow
def test_two_deterministic_edits_give_the_same_bytes(instructions, out_dir, restore_torch_settings, capsys):
    outputs = [out_dir / "first.png", out_dir / "second.png"]
    for output in outputs:
        status = main(["edit", str(instructions), "-o", str(output), "--model", "bundled", "--device", "cpu",
                       "--steps", "6", "--iterations", "1", "--seed", "7", "--deterministic", "--quiet"])
        assert status == 0, capsys.readouterr().err
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
