"""The page's settings: what it shows (:class:`Settings`) and the checked :class:`EditConfig` made from them.

The bounds (:data:`MAX_STEPS`, :data:`MAX_PBSI_TIMESTEPS`, :data:`MAX_ITERATIONS`) lie below the library's
own limits: an edit holds the one model, so one request must not hold it for hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import SEED_LIMIT, ConfigError, EditConfig
from .uploads import UIError

# The settings' bounds: twice the paper preset's steps, four times its PBSI timesteps and five times its K (the
# presets use 25/50 steps, 2/5 timesteps, K = 5/10). Beyond them an edit gains nothing measurable and holds the
# shared model for many minutes; `dragnext edit` has no such bound.
MAX_STEPS = 100
MAX_PBSI_TIMESTEPS = 20
MAX_ITERATIONS = 50
MAX_SEED = SEED_LIMIT - 1  # the seeds an edit takes (config.check_seed), as in the CLI


@dataclass(frozen=True)
class Settings:
    """The settings the page shows (the rest of :class:`EditConfig` comes from the backbone's preset)."""

    steps: Any
    pbsi_timesteps: Any
    iterations: Any
    learning_rate: Any
    lora: bool
    seed: Any
    preset: str = "default"  # the preset the rest of the settings come from (config.PRESET_NAMES)

    @classmethod
    def from_config(cls, config: EditConfig, seed: int = 0, preset: str = "default") -> Settings:
        return cls(config.num_steps, config.pbsi_timesteps, config.iterations, config.learning_rate, config.lora,
                   seed, preset)


def _number(value: Any, label: str) -> float:
    """A number typed in the page (a float from Gradio, or text from a script calling the API)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UIError(f"{label}: enter a number.")
    if isinstance(value, bool):
        raise UIError(f"{label}: {value!r} is not a number.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UIError(f"{label}: {_short(value)} is not a number.") from None
    except OverflowError:  # an int of hundreds of digits
        raise UIError(f"{label}: the number is too large.") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value: Any, label: str, minimum: int, maximum: int) -> int:
    number = _number(value, label)
    if not (number.is_integer() and minimum <= number <= maximum):
        raise UIError(f"{label}: must be a whole number from {minimum} to {maximum}, got {number:g}.")
    return int(number)


def config_from_settings(base: EditConfig, settings: Settings) -> tuple[EditConfig, int]:
    """The :class:`EditConfig` (``base`` with the page's settings) and the seed; messages name the field.

    Every number is checked, finite and within the page's bounds, before anything is derived from it.
    """
    steps = _whole(settings.steps, "Steps", 1, MAX_STEPS)
    pbsi = _whole(settings.pbsi_timesteps, "PBSI timesteps", 0, MAX_PBSI_TIMESTEPS)
    iterations = _whole(settings.iterations, "K (Adam steps per timestep)", 1, MAX_ITERATIONS)
    seed = _whole(settings.seed, "Seed", 0, MAX_SEED)
    learning_rate = _number(settings.learning_rate, "Learning rate")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise UIError(f"Learning rate: must be a positive number, got {learning_rate:g}.")
    try:
        config = base.override(num_steps=steps, pbsi_timesteps=pbsi, iterations=iterations,
                               learning_rate=learning_rate, lora=bool(settings.lora))
    except ConfigError as error:
        raise UIError(str(error)) from None
    return config, seed
