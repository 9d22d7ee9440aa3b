"""Input limits and file checks: one place that decides what a file may be before anything reads it.

Every way in (the CLI, the UI, ``convert``, the benchmark) reads instruction files and images through these
functions, so hostile or odd input gets the same treatment everywhere:

- Only regular files are opened. A FIFO, device or socket is refused from ``os.stat`` alone, because
  opening a FIFO blocks until a writer appears (a hang) and opening some devices has side effects.
- An image's size is read from its header and checked against :class:`Limits` *before* its pixels are
  decoded, so a small file that declares 20000 x 20000 pixels costs nothing.
- High bit depths are scaled to 8 bit, not clipped; a mask painted only in the alpha channel is read from
  the alpha channel.
- Every refusal is an :class:`InputError` whose message is one line naming the field and, for a limit, the
  limit (``image: 'big.png' (9600x9600) is larger than the 8192 px per side limit``).

This module imports only the standard library, numpy and PIL, so checking a file is instant.
"""

from __future__ import annotations

import os
import reprlib
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError


class InputError(ValueError):
    """Input that cannot be used; the message is one line naming the field and the problem.

    :class:`dragnext.instructions.InstructionError` is this same class, so code that catches either catches
    every refusal of a file, a limit or a request.
    """


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may read. The defaults refuse only what no real edit needs."""

    # The editor works at the image's own size. At 8192 px a side the UNet's first self-attention layer
    # sees a million tokens, which no GPU can edit, so a larger side is never a real edit; 8192 is still 4x
    # the ~2048 px the largest GPUs edit today.
    max_side: int = 8192
    # 40 M pixels: 120 MB as RGB, 40 MB per mask. Bounds what decoding one file can cost; a 6000 x 6000
    # photo (36 M) still loads.
    max_pixels: int = 40_000_000
    # A hand-written instruction file is a few KB and a traced polygon of 4096 points ~100 KB; 16 MiB
    # bounds parsing memory (Python objects cost ~10x the text) to a few hundred MB.
    max_json_bytes: int = 16 * 1024 * 1024
    # Each operation holds a full-size mask and costs optimisation time; benchmarks use at most ~10 drags
    # per image (DragBench), so 64 is generous.
    max_operations: int = 64
    # Rasterising a polygon costs (points x image rows); 4096 points cover any traced outline and keep
    # that under a second at the largest image.
    max_polygon_points: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_side", "max_pixels", "max_json_bytes", "max_operations", "max_polygon_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = Limits()

# The web UI serves anyone who can reach the page and shares one edit queue, so it is stricter: 4096 px
# matches its upload limit, a 4096 x 4096 square (16.8 M pixels) keeps one upload under ~50 MB decoded, and 16
# operations keep one request from holding the queue for long.
UI_LIMITS = Limits(
    max_side=4096,
    max_pixels=4096 * 4096,  # a square at the side limit passes
    max_json_bytes=2 * 1024 * 1024,
    max_operations=16,
    max_polygon_points=4096,
)

# The formats an image or mask may be in. Restricting PIL to these keeps its rarely used decoders (icons,
# fonts, camera formats, whose frames can change size on load) away from untrusted files.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF, TIFF, PPM/PGM"

# The target modes read_image returns (as uint8 arrays): colour images, greyscale masks, and colour with
# alpha for a caller that composites transparency itself (the UI puts it on white).
_READ_MODES = ("RGB", "L", "RGBA")


def one_line(text: object, limit: int | None = None) -> str:
    """A message, an exception or any value as one line: every run of whitespace (newlines too) becomes one space.

    An exception whose message is empty gives its type's name. Past ``limit`` characters the text is cut and ends
    in ``...``. The one way messages from elsewhere (PIL, json, a worker's exception) are flattened for printing.
    """
    flat = " ".join(str(text).split())
    if not flat and isinstance(text, BaseException):
        flat = type(text).__name__
    if limit is not None and len(flat) > limit:
        flat = flat[: max(limit - 3, 0)] + "..."
    return flat


def input_error(where: str, problem: str) -> InputError:
    """Build the error; newlines are flattened because callers print the message as one line."""
    message = f"{where}: {problem}" if where else problem
    return InputError(" ".join(message.splitlines()))


# How much of an offending value a message quotes, so that a huge one cannot flood the terminal; file
# names get more room, since their folders are what a user needs to see.
_MAX_QUOTED_CHARS = 60
_MAX_QUOTED_PATH = 200
_SHORT_REPR = reprlib.Repr()  # bounded depth and length: a value nested 900 deep cannot overflow repr
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = _MAX_QUOTED_CHARS
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxdict = 6


def short_repr(value: object, max_chars: int = _MAX_QUOTED_CHARS) -> str:
    """A repr of at most ``max_chars`` characters for a message; never fails, whatever the value.

    A long string loses its middle (a path keeps its start and its file name), anything else its end.
    """
    if isinstance(value, str):
        text = repr(value)
        if len(text) > max_chars:
            keep = (max_chars - 3) // 2
            text = text[:keep] + "..." + text[-keep:]
        return text
    try:
        text = _SHORT_REPR.repr(value)
    except (ValueError, RecursionError):  # an int too long to print (Python's 4300-digit limit), ...
        text = f"<{type(value).__name__}>"
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return text


def quote_path(name: str) -> str:
    """A file name or path as messages quote it: a repr, shortened in the middle past 200 characters."""
    return short_repr(name, _MAX_QUOTED_PATH)


def format_bytes(count: int) -> str:
    """1536 -> '1.5 KiB', 16777216 -> '16 MiB'."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"


# --------------------------------------------------------------------------------------------------------
# Files


def _kind_of(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_regular_file(path: str | os.PathLike[str], where: str, *, name: str | None = None) -> Path:
    """Return ``path`` if it is a regular file (or a link to one); refuse anything else without opening it.

    ``name`` is how messages show the file (what the user wrote; default ``path``); when it differs from
    ``path``, the "does not exist" message also says where it looked.
    """
    path = Path(path)
    shown = str(path) if name is None else name
    quoted = quote_path(shown)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        looked = "" if shown == str(path) or len(str(path)) > _MAX_QUOTED_PATH else f" (looked for {path})"
        raise input_error(where, f"{quoted} does not exist{looked}") from None
    except PermissionError:
        raise input_error(where, f"cannot read {quoted}: permission denied") from None
    except ValueError:  # an embedded NUL byte, or text the file system cannot encode
        raise input_error(where, f"{quoted} is not a valid file path") from None
    except OSError as error:  # a name too long, a loop of links, ...
        raise input_error(where, f"cannot read {quoted}: {error.strerror or error}") from None
    kind = _kind_of(mode)
    if kind is not None:
        raise input_error(where, f"{quoted} is {kind}, not a regular file")
    return path


def open_regular_file(path: str | os.PathLike[str], where: str, *, name: str | None = None) -> BinaryIO:
    """Open a regular file for binary reading, after :func:`check_regular_file`.

    The open is non-blocking and the opened file is checked again, so a file swapped for a FIFO between
    the check and the open is refused instead of hanging.
    """
    path = check_regular_file(path, where, name=name)
    quoted = quote_path(str(path) if name is None else name)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise input_error(where, f"cannot read {quoted}: {error.strerror or error}") from None
    try:
        kind = _kind_of(os.fstat(descriptor).st_mode)
        if kind is not None:
            raise input_error(where, f"{quoted} is {kind}, not a regular file")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_limited_bytes(
    path: str | os.PathLike[str], where: str, max_bytes: int, *, name: str | None = None
) -> bytes:
    """The contents of a regular file of at most ``max_bytes``; never reads more than ``max_bytes + 1``."""
    quoted = quote_path(str(path) if name is None else name)
    with open_regular_file(path, where, name=name) as stream:
        size = os.fstat(stream.fileno()).st_size
        too_large = input_error(where, f"{quoted} is larger than the {format_bytes(max_bytes)} limit")
        if size > max_bytes:
            raise too_large
        try:
            data = stream.read(max_bytes + 1)  # +1: a file that grew since fstat is still caught
        except OSError as error:
            raise input_error(where, f"cannot read {quoted}: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise too_large
    return data


# --------------------------------------------------------------------------------------------------------
# Images


def check_image_size(width: int, height: int, where: str, limits: Limits = DEFAULT_LIMITS,
                     *, name: str | None = None) -> None:
    """Refuse an image of ``width x height`` pixels that is empty or over ``limits`` (``name``: the file)."""
    size = f"{width}x{height}"
    subject = size if name is None else f"{quote_path(name)} ({size})"
    if width < 1 or height < 1:
        raise input_error(where, f"{subject} is an empty image")
    if width > limits.max_side or height > limits.max_side:
        raise input_error(where, f"{subject} is larger than the {limits.max_side} px per side limit")
    if width * height > limits.max_pixels:
        raise input_error(where, f"{subject} has {width * height:,} pixels, more than the "
                                 f"{limits.max_pixels:,} pixel limit")


def _scaled_to_8bit(picture: Image.Image) -> Image.Image:
    """A single-channel 16/32-bit integer or float picture as mode "L", scaled rather than clipped.

    The values are read in the smallest of the ranges [0, 1] (floats only), [0, 255], [0, 65535] that holds
    them all, and beyond that in [0, their maximum]: a 16-bit mask with a faint background keeps it faint,
    and a 16-bit file holding 0/255 (an 8-bit mask stored wide) still reads as 0/255. Negative values and
    NaN read as 0. PIL's own ``convert("L")`` clips at 255, which turns any faint value white.
    """
    values = np.array(picture, dtype=np.float32)
    values[~np.isfinite(values)] = 0
    largest = float(values.max(initial=0.0))
    ranges = ((1.0,) if picture.mode == "F" else ()) + (255.0, 65535.0)
    top = next((r for r in ranges if largest <= r), largest)
    values *= 255.0 / top
    np.clip(values, 0, 255, out=values)
    np.rint(values, out=values)
    return Image.fromarray(values.astype(np.uint8))  # 2-D uint8: mode "L"


def _has_alpha(picture: Image.Image) -> bool:
    return "A" in picture.getbands() or "a" in picture.getbands() or "transparency" in picture.info


def _mask_values(picture: Image.Image) -> np.ndarray:
    """A mask picture as ``H x W`` uint8: its alpha channel when only that carries the mask, else grey.

    This is the UI's rule for painted strokes (a painted pixel is one with alpha): a mask drawn as black or
    white strokes on a transparent background has one colour everywhere and says everything in alpha, and
    reading its colour (all one value) would give an empty or a full mask. Palette and 1-bit masks without
    transparency read as before, by luminance.
    """
    if _has_alpha(picture):
        rgba = np.asarray(picture.convert("RGBA"))
        colour_is_constant = all(rgba[..., c].min() == rgba[..., c].max() for c in range(3))
        alpha = rgba[..., 3]
        if colour_is_constant and alpha.min() != alpha.max():
            return np.ascontiguousarray(alpha)
    return np.asarray(picture.convert("L"))


def _pixels(picture: Image.Image, mode: str) -> np.ndarray:
    """The decoded picture in ``mode`` (one of :data:`_READ_MODES`) as a uint8 array."""
    if picture.mode in ("I", "F") or picture.mode.startswith("I;16"):
        picture = _scaled_to_8bit(picture)
    if mode == "L":
        return _mask_values(picture)
    return np.asarray(picture.convert(mode))


def read_image(
    path: str | os.PathLike[str],
    where: str,
    mode: str = "RGB",
    limits: Limits = DEFAULT_LIMITS,
    *,
    name: str | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read an image file as a uint8 array: ``H x W x 3`` for ``mode="RGB"``, ``H x W`` for ``mode="L"``,
    ``H x W x 4`` for ``mode="RGBA"``.

    Steps: refuse anything but a regular file; read the header of one of :data:`IMAGE_FORMATS`; check the
    size against ``limits``; only then decode. ``mode="L"`` is for masks (alpha rule in
    :func:`_mask_values`); 16-bit and float pictures are scaled to 8 bit in both modes. EXIF orientation is
    not applied: points are given in the pixels of the stored image. ``name`` is how messages show the
    file (default ``path``). ``size``: the ``(width, height)`` the picture must have (a mask, the image's), also
    checked from the header, so a mask of the wrong size is refused without being decoded.
    """
    if mode not in _READ_MODES:
        raise ValueError(f"mode must be one of {_READ_MODES}, got {mode!r}")
    shown = str(path) if name is None else name
    quoted = quote_path(shown)
    with open_regular_file(path, where, name=name) as stream:
        try:
            # Our size check below is stricter than PIL's bomb guard (~89 M pixels warns, ~179 M refuses)
            # and reports the size, so PIL's warning would only add a second, vaguer line. (The filter is
            # process-wide for the moment of a header read; at worst a concurrent warning goes unshown.)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                picture = Image.open(stream, formats=IMAGE_FORMATS)
        except UnidentifiedImageError:
            problem = f"{quoted} is not an image file in a format read here ({_FORMAT_NAMES})"
            raise input_error(where, problem) from None
        except Image.DecompressionBombError:
            # PIL refuses above 2 * MAX_IMAGE_PIXELS before telling us the size; report it as our limit
            # when ours is the smaller one (always, unless someone raised ours above PIL's).
            limit = min(limits.max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or 0)) or limits.max_pixels
            raise input_error(where, f"{quoted} has more than the {limit:,} pixel limit") from None
        except Exception as error:  # PIL's header parsers raise many types on corrupt bytes
            raise input_error(where, f"cannot read {quoted}: {_describe(error)}") from None
        with picture:
            declared_size = picture.size
            check_image_size(*declared_size, where, limits, name=shown)
            if size is not None and tuple(declared_size) != tuple(size):
                raise input_error(where, f"mask is {declared_size[0]}x{declared_size[1]} but the image is "
                                         f"{size[0]}x{size[1]}")
            try:
                picture.load()
                if picture.size != declared_size:  # formats whose frames resize on load are excluded, but check
                    raise ValueError(f"decoded {picture.width}x{picture.height}, the header said "
                                     f"{declared_size[0]}x{declared_size[1]}")
                return _pixels(picture, mode)
            except Exception as error:  # corrupt data: OSError, SyntaxError, struct.error, IndexError...
                raise input_error(where, f"cannot read {quoted}: {_describe(error)}") from None


def _describe(error: Exception) -> str:
    """A decoder's exception as a short phrase for a one-line message."""
    return one_line(error, 120)
