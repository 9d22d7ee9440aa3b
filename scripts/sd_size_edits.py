"""Whole edits at Stable Diffusion 1.5 size with random weights: seconds and peak memory per recipe.

``dragnext bench --cost-only`` prices each recipe from timed UNet passes; this runs the editor itself, end to end
(VAE, text encoder, scheduler, LoRA, hooks and all), on a randomly initialised model with SD-1.5's
architecture, so what the pass table leaves out is counted too. Random weights: the pictures are noise, the
compute is SD's. Nothing is downloaded: the components are built from their configurations and saved to a folder
that ``load_backbone`` then reads like any downloaded model.

    python scripts/sd_size_edits.py --device cuda --out sd-size.json

Recipes, each run once after one untimed warm-up edit:
- ``v2``: the default Stable Diffusion preset, the identity LoRA fitted (its cache emptied first);
- ``v2-cached-lora``: the same edit again, the LoRA read from the cache;
- ``v2-no-lora``;
- ``paper``: the paper's settings (50 steps, strength 0.75, PBSI 5 x 10, LoRA);
- ``dragdiffusion``: the ``point`` baseline with DragDiffusion's schedule (50 steps, 35 inverted, LoRA, 80
  motion-supervision steps at most; random weights never arrive, so all 80 run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch


def build_sd15_folder(folder: Path, tiny: bool = False) -> Path:
    """SD-1.5's UNet, VAE and text encoder with random weights, a character tokenizer, its DDIM scheduler
    (``--tiny``: the same layout, small, to try this script on a CPU in seconds): ``dragnext.models.factory``."""
    from dragnext.models.factory import build_model_folder

    return build_model_folder("tiny" if tiny else "sd15", folder)


def request_512():
    """A 512 x 512 picture with one translated square region (the compute does not depend on the content)."""
    from dragnext.instructions import DragRequest, make_operation

    rng = np.random.default_rng(0)
    image = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
    region = np.zeros((512, 512), bool)
    region[200:280, 160:240] = True
    operation = make_operation("translate", region, (200, 240), (280, 240))
    return DragRequest(image=image, operations=(operation,), prompt="a photo of a cat")


def recipes(backbone):
    """name -> (method, settings, whether its LoRA may come from the cache)."""
    from dragnext.baselines import DRAGDIFFUSION, POINT_SETTINGS, dragnext, point_drag
    from dragnext.config import preset

    default, paper = preset(backbone.name), preset(backbone.name, "paper")
    dragdiffusion = default.override(num_steps=50, strength=0.7, lora=True, **POINT_SETTINGS)
    # random features never bring the handles to their targets reliably: run DragDiffusion's maximum of 80
    # steps, as the pass table of --cost-only counts it
    all_steps = partial(point_drag, settings=replace(DRAGDIFFUSION, reach_distance=0.0))
    return {
        "v2": (dragnext, default, False),
        "v2-cached-lora": (dragnext, default, True),
        "v2-no-lora": (dragnext, default.override(lora=False), False),
        "paper": (dragnext, paper, False),
        "dragdiffusion": (all_steps, dragdiffusion, False),
    }


def forget_lora(backbone) -> None:
    """Empty the LoRA caches (memory and disk): every recipe but ``v2-cached-lora`` fits its own."""
    from dragnext.models.stable_diffusion import lora_cache_dir

    backbone._lora_memory.clear()
    backbone._lora_key = None
    shutil.rmtree(lora_cache_dir(), ignore_errors=True)


def measure(run, backbone, request, config, device) -> dict:
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = run(backbone, request, config, seed=0)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 3),
        "phases": {phase: round(value, 3) for phase, value in result.timings.items()},
        "passes": vars(result.passes),
        "peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if cuda else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="sd-size.json")
    parser.add_argument("--only", help="comma-separated recipes (default: all)")
    parser.add_argument("--dtype", choices=("float16", "float32"), help="default: fp16 on CUDA, else fp32")
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the same layout, to try the script")
    args = parser.parse_args(argv)

    from dragnext.models import load_backbone

    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="sd-size-"))
    os.environ["DRAGNEXT_CACHE_DIR"] = str(work / "cache")
    try:
        started = time.perf_counter()
        folder = build_sd15_folder(work / "model", args.tiny)
        print(f"built the model folder in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        backbone = load_backbone(str(folder), device=device,
                                 dtype=getattr(torch, args.dtype) if args.dtype else None)
        request = request_512()
        table = recipes(backbone)
        chosen = args.only.split(",") if args.only else list(table)
        report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
                  "dtype": str(backbone.dtype).removeprefix("torch."), "image": "512 x 512", "tiny": args.tiny,
                  "recipes": {}}
        run, config, _ = table["v2-no-lora"]
        measure(run, backbone, request, config, device)  # warm-up: kernels, allocator
        for name in chosen:
            run, config, cached = table[name]
            if not cached:
                forget_lora(backbone)
            report["recipes"][name] = row = measure(run, backbone, request, config, device)
            print(f"{name}: {row['seconds']:.2f} s, peak {row['peak_mb']} MB, passes {row['passes']}",
                  file=sys.stderr, flush=True)
            Path(args.out).write_text(json.dumps(report, indent=1))
        reference = report["recipes"].get("dragdiffusion")
        if reference:
            for row in report["recipes"].values():
                row["time_ratio"] = round(row["seconds"] / reference["seconds"], 3)
                if row["peak_mb"] and reference["peak_mb"]:
                    row["peak_ratio"] = round(row["peak_mb"] / reference["peak_mb"], 3)
        Path(args.out).write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
