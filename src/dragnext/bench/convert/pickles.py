"""The restricted unpickler: a pickle may build numpy arrays, dicts, lists, strings and numbers, nothing else.

Every global the pickle references is looked up in :data:`ALLOWED_GLOBALS` before anything is called; any
other raises :class:`UnsafePickleError`, so nothing of a hostile file runs.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from ...limits import one_line
from .common import ConversionError

# What a pickled ndarray references, in numpy 1.x and 2.x spelling: `_reconstruct`, `ndarray` and `dtype` are all
# the DragBench files use (protocol 4); `_frombuffer` is what the same array needs when saved with protocol 5
# (the default from Python 3.14). Nothing here runs code given by the file: these only build arrays.
ALLOWED_GLOBALS = (
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
)


class UnsafePickleError(ConversionError):
    """A pickle that references a global outside :data:`ALLOWED_GLOBALS`; nothing of it was run."""


def _import_attribute(module_names: Sequence[str], name: str) -> Any:
    """The first ``module.name`` that imports (numpy 2 moved ``numpy.core`` to ``numpy._core``)."""
    for module_name in module_names:
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
    return None


@cache
def _allowed_objects() -> dict[tuple[str, str], Any]:
    reconstruct = _import_attribute(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _import_attribute(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    objects = {"_reconstruct": reconstruct, "_frombuffer": frombuffer, "ndarray": np.ndarray, "dtype": np.dtype}
    allowed = {}
    for dotted in ALLOWED_GLOBALS:
        module, _, name = dotted.rpartition(".")
        if objects[name] is not None:
            allowed[(module, name)] = objects[name]
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_objects().get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global '{module}.{name}' "
                "(only numpy arrays, dicts, lists, strings and numbers are allowed)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refusing a persistent id in the pickle")


def restricted_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` admitting only :data:`ALLOWED_GLOBALS`; ``source`` names the file in messages.

    A forbidden global raises :class:`UnsafePickleError`; any other failure, :class:`ConversionError` in one line.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # a malformed pickle can raise almost anything; report it as one line
        raise ConversionError(f"{source}: not a readable pickle: {one_line(exc, 300)}") from None
