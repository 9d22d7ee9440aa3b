"""The page's settings: what it shows (:class:`Settings`) and the checked :class:`EditConfig` made from them.

The bounds (:data:`MAX_STEPS`, :data:`MAX_PBSI_TIMESTEPS`, :data:`MAX_ITERATIONS`) lie below the library's
own limits: an edit holds the one model, so one request must not hold it for hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, get_type_hints

from ..config import SEED_LIMIT, ConfigError, EditConfig
from .uploads import UIError

# The settings' bounds: twice the paper preset's steps, four times its PBSI timesteps and five times its K (the
# presets use 25/50 steps, 2/5 timesteps, K = 5/10). Beyond them an edit gains nothing measurable and holds the
# shared model for many minutes; `dragnext edit` has no such bound.
MAX_STEPS = 100
MAX_PBSI_TIMESTEPS = 20
MAX_ITERATIONS = 50
MAX_SEED = SEED_LIMIT - 1  # the seeds an edit takes (config.check_seed), as in the CLI


# What a number field of the page holds: a float from the browser, text or an int from a script calling the API.
# config_from_settings checks it before it reaches EditConfig.
PageNumber = float | int | str | None


@dataclass(frozen=True)
class PageField:
    """One setting the page shows: the :class:`EditConfig` field it sets, its label and its bounds."""

    name: str  # an EditConfig field; its type there (int, float, bool) decides how the page's value is read
    label: str  # as on the page, for messages
    minimum: float = 0
    maximum: float = math.inf


# The EditConfig fields the page shows, in the order of Settings' first fields (the rest come from the preset).
PAGE_FIELDS = (
    PageField("num_steps", "Steps", 1, MAX_STEPS),
    PageField("pbsi_timesteps", "PBSI timesteps", 0, MAX_PBSI_TIMESTEPS),
    PageField("iterations", "K (Adam steps per timestep)", 1, MAX_ITERATIONS),
    PageField("learning_rate", "Learning rate"),  # positive and finite; EditConfig checks its own upper bound
    PageField("lora", "Identity LoRA"),
)
_CONFIG_TYPES = {name: kind.__name__ if isinstance(kind, type) else str(kind)
                 for name, kind in get_type_hints(EditConfig).items()}


@dataclass(frozen=True)
class Settings:
    """The settings the page shows, as it sends them (unchecked): the :class:`EditConfig` fields of
    :data:`PAGE_FIELDS` under their own names, the seed and the preset the rest of the settings come from."""

    num_steps: PageNumber
    pbsi_timesteps: PageNumber
    iterations: PageNumber
    learning_rate: PageNumber
    lora: bool
    seed: PageNumber
    preset: str = "default"  # config.PRESET_NAMES

    @classmethod
    def from_config(cls, config: EditConfig, seed: int = 0, preset: str = "default") -> Settings:
        return cls(**{f.name: getattr(config, f.name) for f in PAGE_FIELDS}, seed=seed, preset=preset)


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


def _read(field: PageField, value: Any) -> Any:
    """The page's ``value`` of ``field`` as its EditConfig type, within the field's bounds."""
    kind = _CONFIG_TYPES[field.name]
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return _whole(value, field.label, int(field.minimum), int(field.maximum))
    number = _number(value, field.label)
    if not (math.isfinite(number) and number > field.minimum and number <= field.maximum):
        raise UIError(f"{field.label}: must be a positive number, got {number:g}.")
    return number


def config_from_settings(base: EditConfig, settings: Settings) -> tuple[EditConfig, int]:
    """The :class:`EditConfig` (``base`` with the page's settings) and the seed; messages name the field.

    Every number is checked, finite and within the page's bounds, before anything is derived from it.
    """
    values = {f.name: _read(f, getattr(settings, f.name)) for f in PAGE_FIELDS}
    seed = _whole(settings.seed, "Seed", 0, MAX_SEED)
    try:
        config = base.override(**values)
    except ConfigError as error:
        raise UIError(str(error)) from None
    return config, seed
