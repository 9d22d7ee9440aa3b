"""Which backbone a ``--model`` value names, decided without torch and without loading a weight.

The one place that knows diffusers folder layouts: :func:`resolve_model` reads a folder's JSON configs (or, for a
hub id, the hub cache's ``model_index.json``, else the id's name) and says what kind of model it is and which
preset of ``config.PRESETS`` edits with it. The CLI calls it once per command to choose the settings, and hands
the result to ``load_backbone``, which loads that kind without deciding again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from ..config import BUNDLED_DIR

MAX_MODEL_CONFIG_BYTES = 1 << 20  # a diffusers config.json is a few kB; refuse to read a huge one

# kinds of backbone; each is also the name of its preset in config.PRESETS (and the backbone's ``name``)
BUNDLED = "bundled"
STABLE_DIFFUSION = "stable-diffusion"  # SD 1.x and 2.x (epsilon or v-prediction): the same UNet layout
STABLE_DIFFUSION_XL = "stable-diffusion-xl"
KINDS = (BUNDLED, STABLE_DIFFUSION, STABLE_DIFFUSION_XL)

# A hub id that names SDXL when its model_index.json is not in the hub cache: "...stable-diffusion-xl...",
# "sdxl...", "...-xl-..." (e.g. stabilityai/stable-diffusion-xl-base-1.0, stabilityai/sdxl-turbo).
_XL_NAME = re.compile(r"(stable-diffusion-xl|sdxl|(^|[-_/.])xl([-_/.]|$))", re.IGNORECASE)


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message is one line that says what to do."""


class ResolvedModel(NamedTuple):
    spec: str  # the ``--model`` value: "bundled", a folder or a hub id
    kind: str  # one of KINDS: the Backbone class that loads it
    preset: str  # the key of its presets in config.PRESETS
    folder: Path | None  # the local folder, None for a hub id


def read_model_config(path: Path) -> dict[str, Any]:
    """A model folder's JSON config (``unet/config.json``, ...) as a dict, read without loading any weights.

    OSError: missing, or not a regular file (a FIFO would block the read forever); ValueError, with a one-line
    message: too large, not UTF-8 JSON, or not a JSON object (``[]`` would reach diffusers, which then reads a
    string config as a hub id and goes online)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' is not a file")
    if path.stat().st_size > MAX_MODEL_CONFIG_BYTES:
        raise ValueError(f"'{path}' is larger than {MAX_MODEL_CONFIG_BYTES} bytes; not a model config")
    try:
        document = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"'{path}' is not valid JSON") from None
    if not isinstance(document, dict):
        raise ValueError(f"'{path}' must hold a JSON object, got {type(document).__name__}")
    return document


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, and no model config holds them."""
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def _config_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return read_model_config(path)
    except (OSError, ValueError):
        return None


def local_model_folder(model: str) -> Path | None:
    """The folder a ``--model`` value names: the bundled model's, or a local folder; None for a hub id."""
    if model == "bundled":
        return BUNDLED_DIR
    folder = Path(model).expanduser()
    return folder if folder.is_dir() else None


def kind_of_folder(folder: Path) -> str:
    """The kind of a diffusers folder, from (in this order) ``model_index.json``'s pipeline class, the presence of
    ``text_encoder_2/``, and ``unet/config.json`` (``UNet2DModel``: pixel space; ``addition_embed_type`` "text_time":
    SDXL's micro-conditioning). A config that cannot be read counts as absent: loading reports it."""
    index = _config_or_none(folder / "model_index.json") or {}
    pipeline = str(index.get("_class_name", ""))
    if "XL" in pipeline:  # StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline, ...
        return STABLE_DIFFUSION_XL
    if (folder / "text_encoder_2").is_dir():
        return STABLE_DIFFUSION_XL
    unet = _config_or_none(folder / "unet" / "config.json") or {}
    if unet.get("_class_name") == "UNet2DModel":
        return BUNDLED
    if unet.get("addition_embed_type") == "text_time":
        return STABLE_DIFFUSION_XL
    return STABLE_DIFFUSION


def kind_of_hub_id(model: str) -> str:
    """The kind of a hub id: from its ``model_index.json`` if the hub cache holds it (read offline), else its
    name (:data:`_XL_NAME`); Stable Diffusion 1.x/2.x otherwise."""
    pipeline = ""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "model_index.json")
        if isinstance(cached, str):
            pipeline = str((_config_or_none(Path(cached)) or {}).get("_class_name", ""))
    except Exception:  # noqa: BLE001 - an id the hub library rejects, a cache it cannot read: decide by the name
        pipeline = ""
    if "XL" in pipeline or (not pipeline and _XL_NAME.search(model)):
        return STABLE_DIFFUSION_XL
    return STABLE_DIFFUSION


# The JSON configs of a diffusers folder that the loaders read, where present (a missing one is theirs to report).
CONFIG_FILES = ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                "text_encoder_2/config.json", "tokenizer/tokenizer_config.json", "tokenizer_2/tokenizer_config.json",
                "scheduler/scheduler_config.json")


REQUIRED_FILES = ("unet/config.json", "scheduler/scheduler_config.json")  # every backbone's loader reads them


def check_model_configs(folder: Path) -> None:
    """Each config a loader will read must be a JSON object, checked without importing torch. diffusers takes a
    malformed one for something else: ``[]`` ends in an AttributeError, a JSON string is read as a hub id and
    fetched. Raises :class:`ModelLoadError` naming the file."""
    for name in CONFIG_FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            read_model_config(path)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the model from '{folder}': {error}") from None


def check_model_path(model: str) -> None:
    """A ``--model`` that names an existing path must name a folder: a file, a FIFO or a device is refused here,
    before anything is loaded (a hub id names no local path)."""
    if model == "bundled":
        return
    path = Path(model).expanduser()
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError):
        return  # a name the file system refuses is no local path: the loader reports it as a missing model
    if exists and not is_dir:
        raise ModelLoadError(f"--model: '{model}' is not a folder; give a diffusers model folder (unet/, "
                             "scheduler/, ...), a hub id or 'bundled'")
    if is_dir:
        missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
        if missing:
            raise ModelLoadError(f"--model: '{model}' is not a diffusers model folder: it has no {missing[0]}")
        check_model_configs(path)


class UNetOutline(NamedTuple):
    """What a UNet's config says of its parts, read without building it."""

    blocks: tuple[str, ...]  # its top-level blocks: down_blocks.0, ..., mid_block, up_blocks.0, ...
    self_attention_layers: int | None  # how many (``attention.self_attention_layers``); None: a layout not known

    def has_block(self, name: str) -> bool:
        """Whether a module name lies in one of the blocks (``up_blocks.1.attentions.0`` in ``up_blocks.1``): as
        far as a config can vouch for it; deeper names are checked once the model is loaded."""
        parts = name.split(".")
        return (parts[0] if parts[0] == "mid_block" else ".".join(parts[:2])) in self.blocks

    @property
    def up_blocks(self) -> list[str]:
        return [block for block in self.blocks if block.startswith("up_blocks.")]


_PLAIN_BLOCKS = {"DownBlock2D", "UpBlock2D"}
_SELF_ATTENTION_BLOCKS = {"AttnDownBlock2D", "AttnUpBlock2D"}  # one self-attention per layer
_TRANSFORMER_BLOCKS = {"CrossAttnDownBlock2D", "CrossAttnUpBlock2D"}  # a transformer (self + cross) per layer


def unet_outline(config: dict[str, Any]) -> UNetOutline | None:
    """The blocks and self-attention layers of a ``UNet2DConditionModel`` or ``UNet2DModel`` config, as
    diffusers builds them (down blocks: ``layers_per_block`` layers, up blocks one more; a cross-attention
    block's layer holds ``transformer_layers_per_block`` transformers, reversed on the way up; a mid block one
    layer); None for a config this does not understand. ``tests/test_backbones.py`` checks it against the
    UNets diffusers builds."""
    down, up = config.get("down_block_types"), config.get("up_block_types")
    if not (isinstance(down, list) and isinstance(up, list) and down and all(isinstance(b, str) for b in down + up)):
        return None
    pixel_space = config.get("_class_name") == "UNet2DModel"
    mid = config.get("mid_block_type", "UNetMidBlock2D" if pixel_space else "UNetMidBlock2DCrossAttn")
    blocks = tuple([f"down_blocks.{i}" for i in range(len(down))] + (["mid_block"] if mid else [])
                   + [f"up_blocks.{i}" for i in range(len(up))])

    def per_block(value: Any, count: int) -> list[int] | None:
        values = list(value) if isinstance(value, (list, tuple)) else [value] * count
        ok = len(values) == count and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
        return values if ok else None

    layers = per_block(config.get("layers_per_block", 2), len(down))
    depth = per_block(config.get("transformer_layers_per_block", 1), len(down))
    reverse_depth = config.get("reverse_transformer_layers_per_block")
    up_depth = per_block(reverse_depth, len(up)) if reverse_depth is not None else (
        list(reversed(depth)) if depth is not None else None)
    if layers is None or depth is None or up_depth is None or len(up) != len(down) or config.get(
            "only_cross_attention"):
        return UNetOutline(blocks, None)
    count = 0
    for kind, n, d in zip(down, layers, depth, strict=True):
        count += n * d if kind in _TRANSFORMER_BLOCKS else n if kind in _SELF_ATTENTION_BLOCKS else 0
        if kind not in _TRANSFORMER_BLOCKS | _SELF_ATTENTION_BLOCKS | _PLAIN_BLOCKS:
            return UNetOutline(blocks, None)
    for kind, n, d in zip(up, reversed(layers), up_depth, strict=True):
        count += (n + 1) * d if kind in _TRANSFORMER_BLOCKS else n + 1 if kind in _SELF_ATTENTION_BLOCKS else 0
        if kind not in _TRANSFORMER_BLOCKS | _SELF_ATTENTION_BLOCKS | _PLAIN_BLOCKS:
            return UNetOutline(blocks, None)
    if mid == "UNetMidBlock2DCrossAttn":
        count += depth[-1]
    elif mid == "UNetMidBlock2D":
        count += 1 if config.get("add_attention", True) else 0
    elif mid:
        return UNetOutline(blocks, None)
    return UNetOutline(blocks, count)


def model_unet_outline(model: str | ResolvedModel) -> UNetOutline | None:
    """The outline of a local ``--model`` folder's UNet (:func:`unet_outline`); None for a hub id or a config
    that loading will report."""
    folder = resolve_model(model).folder
    config = None if folder is None else _config_or_none(folder / "unet" / "config.json")
    return None if config is None else unet_outline(config)


def resolve_model(model: str | ResolvedModel) -> ResolvedModel:
    """What ``--model`` names: ``"bundled"``, a local diffusers folder or a hub id, and its kind and preset.

    Never raises for a folder it cannot read (the kind falls back to Stable Diffusion, and loading reports why)."""
    if isinstance(model, ResolvedModel):
        return model
    folder = local_model_folder(model)
    if model == "bundled":
        kind = BUNDLED
    elif folder is not None:
        kind = kind_of_folder(folder)
    else:
        kind = kind_of_hub_id(model)
    return ResolvedModel(spec=model, kind=kind, preset=kind, folder=folder)


def model_scheduler_config(model: str | ResolvedModel) -> dict[str, Any] | None:
    """The scheduler config of a local ``--model`` folder, read without loading anything; None when unknown
    (a hub id, or a config that loading will report as broken), in which case ``check_config`` checks later."""
    folder = resolve_model(model).folder
    if folder is None:
        return None
    config = _config_or_none(folder / "scheduler" / "scheduler_config.json")
    if config is None:
        return None
    steps, offset = config.get("num_train_timesteps", 1000), config.get("steps_offset", 0)
    well_formed = all(isinstance(v, int) and not isinstance(v, bool) for v in (steps, offset))
    return config if well_formed and 0 < steps <= 100_000 and offset >= 0 else None


def native_resolution(unet_config: dict[str, Any], vae_config: dict[str, Any] | None = None) -> int:
    """The image side a model was trained at: the UNet's ``sample_size`` (latent side) times the VAE's
    down-sampling (2 per block after the first); a pixel-space model (no VAE) its ``sample_size``.

    SD 1.5: 64 x 8 = 512; SD 2.x-v (768-v): 96 x 8 = 768; SDXL: 128 x 8 = 1024; the bundled model: 64."""
    size = unet_config.get("sample_size", 64)
    side = int(size[0] if isinstance(size, (list, tuple)) else size)
    if vae_config is not None:
        side *= 2 ** (len(vae_config.get("block_out_channels", (0,))) - 1)
    return side
