"""Training of the bundled pixel-space diffusion model on procedural scenes.

A small diffusers ``UNet2DModel`` (about 4.5M parameters, self-attention at 16 and 8 px so that mutual
self-attention has layers to act on), epsilon prediction, cosine noise schedule (better than linear for
64 px images, Nichol & Dhariwal 2021), Min-SNR-5 loss weighting (Hang et al. 2023, faster convergence),
EMA of the weights, a learning rate that warms up and then decays with a cosine over a *time* budget, so a
run of any length ends with a decayed rate. Everything is seeded.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from PIL import Image

from ..scenes import Polygon, random_scene, render
from .base import seeded_construction

logger = logging.getLogger(__name__)


def bundled_unet(sample_size: int = 64) -> UNet2DModel:
    """The architecture of the bundled model, randomly initialised."""
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 128, 128),  # 4.5M parameters: ~0.8 s per batch of 16 on 2 CPU cores
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
        norm_num_groups=16,
    )


def bundled_noise_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,
    )


@dataclass(frozen=True)
class TrainConfig:
    minutes: float = 100.0  # wall-clock budget; the learning rate decays to its floor at the end
    batch_size: int = 16  # the measured sweet spot on 2 CPU cores
    learning_rate: float = 8e-4  # peak, after warm-up
    min_learning_rate: float = 1e-5  # floor of the cosine decay
    warmup_steps: int = 200
    ema_decay: float = 0.9995
    min_snr_gamma: float = 5.0  # Min-SNR weighting (Hang et al. 2023)
    deformed_fraction: float = 0.25  # share of polygons with one vertex dragged, as edits produce
    image_size: int = 64
    seed: int = 0
    bf16: bool = True  # bf16 autocast on CPU (AMX): faster training here
    checkpoint_minutes: float = 10.0


def _training_image(rng: np.random.Generator, config: TrainConfig) -> np.ndarray:
    scene = random_scene(rng, size=config.image_size)
    shapes = list(scene.shapes)
    for i, shape in enumerate(shapes):
        if isinstance(shape, Polygon) and rng.random() < config.deformed_fraction:
            k = int(rng.integers(len(shape.vertices)))
            x, y = shape.vertices[k]
            dx, dy = rng.uniform(-8, 8, size=2) * config.image_size / 64
            limit = config.image_size - 2.0
            shapes[i] = shape.with_vertex(k, (float(np.clip(x + dx, 1, limit)), float(np.clip(y + dy, 1, limit))))
    scene = scene.__class__(scene.size, scene.color_start, scene.color_end, scene.gradient_angle, tuple(shapes))
    return render(scene)


def _batch(rng: np.random.Generator, config: TrainConfig) -> torch.Tensor:
    images = np.stack([_training_image(rng, config) for _ in range(config.batch_size)])
    if rng.random() < 0.5:  # horizontal flips are free extra variety (gradients and shapes are symmetric)
        images = images[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2) * 2.0 - 1.0


def _learning_rate(config: TrainConfig, step: int, elapsed_fraction: float) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(elapsed_fraction, 1.0)))
    return config.min_learning_rate + (config.learning_rate - config.min_learning_rate) * cosine


@torch.no_grad()
def sample_grid(
    unet: UNet2DModel, scheduler_config: dict, count: int = 16, steps: int = 50, seed: int = 0
) -> np.ndarray:
    """DDIM samples from pure noise, as one ``uint8`` grid image (4 per row)."""
    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    x = torch.randn(count, 3, size, size, generator=generator)
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    images = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    rows = [np.concatenate(list(images[i : i + 4]), axis=1) for i in range(0, count, 4)]
    return np.concatenate(rows, axis=0)


def save_model(unet: UNet2DModel, out_dir: Path, scheduler: DDPMScheduler) -> None:
    """Write the model as a diffusers folder (``unet/`` in fp16 safetensors, ``scheduler/``)."""
    out_dir = Path(out_dir)
    unet.to(torch.float16).save_pretrained(out_dir / "unet", safe_serialization=True)
    unet.to(torch.float32)
    DDIMScheduler.from_config(scheduler.config).save_pretrained(out_dir / "scheduler")


def train_bundled(
    out_dir: Path, config: TrainConfig = TrainConfig(), progress: Callable[[int, float, float], None] | None = None
) -> Path:
    """Train the bundled model for ``config.minutes`` and write it, a loss log and sample grids to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    with seeded_construction(config.seed):
        unet = bundled_unet(config.image_size)
    noise_scheduler = bundled_noise_scheduler()
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=3 / 4)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, weight_decay=0.0)
    alphas_cumprod = noise_scheduler.alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    weights = torch.clamp(snr, max=config.min_snr_gamma) / snr
    (out_dir / "train_config.json").write_text(__import__("json").dumps(asdict(config), indent=2))

    budget = config.minutes * 60.0
    start = time.monotonic()
    last_checkpoint = start
    step = 0
    with open(out_dir / "loss.csv", "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["step", "seconds", "lr", "loss"])
        while (elapsed := time.monotonic() - start) < budget:
            lr = _learning_rate(config, step, elapsed / budget)
            for group in optimizer.param_groups:
                group["lr"] = lr
            clean = _batch(rng, config)
            noise = torch.randn(clean.shape, generator=generator)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (clean.shape[0],),
                                      generator=generator)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                prediction = unet(noisy, timesteps).sample
            per_sample = F.mse_loss(prediction.float(), noise, reduction="none").mean(dim=(1, 2, 3))
            loss = (per_sample * weights[timesteps]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            ema.step(unet.parameters())
            step += 1
            if step % 25 == 0:
                log.writerow([step, f"{elapsed:.1f}", f"{lr:.2e}", f"{loss.item():.5f}"])
                log_file.flush()
                if progress:
                    progress(step, elapsed, loss.item())
            if time.monotonic() - last_checkpoint > config.checkpoint_minutes * 60:
                _write_ema(unet, ema, out_dir, noise_scheduler, step)
                last_checkpoint = time.monotonic()
    _write_ema(unet, ema, out_dir, noise_scheduler, step, grid=True)
    logger.info("trained %d steps in %.1f minutes", step, (time.monotonic() - start) / 60)
    return out_dir


def _write_ema(unet, ema, out_dir: Path, noise_scheduler, step: int, grid: bool = False) -> None:
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        unet.eval()
        save_model(unet, out_dir / "model", noise_scheduler)
        (out_dir / "model" / "steps.txt").write_text(f"{step}\n")
        if grid:
            Image.fromarray(sample_grid(unet, noise_scheduler.config)).save(out_dir / "samples.png")
    finally:
        unet.train()
        ema.restore(unet.parameters())
