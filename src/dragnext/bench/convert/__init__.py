"""Convert the point-based drag benchmarks (DragBench, Drag100) into instruction folders.

Each sample becomes ``<out>/<dataset>/<sample>/`` holding ``instructions.json`` and its PNGs (written by
:func:`~dragnext.instructions.save_instructions`) plus a sidecar ``conversion.json`` that says where the sample
came from and how its regions were derived (the instruction format forbids unknown keys, so the record cannot
go into ``instructions.json`` itself). ``<sample>`` is the sample folder relative to the root given, e.g.
``animals/JH_2023-09-14-1820-16`` for DragBench (the category is kept) and ``cat_6`` for Drag100.

The benchmarks give only points: ``[handle, target, handle, target, ...]``, no region and no drag type.
Choices made here:

- Every (handle, target) pair becomes a ``translate`` operation, in the order of the source.
- Its region is a disc of radius ``R`` around the handle (pixels whose centre lies within ``R``), intersected
  with the editable mask (the sidecar records ``intersected_with_editable``, false only for a sample without a
  mask). A disc entirely outside the editable mask fails the sample: nothing in it may change, so the editor
  refuses such a region. ``R`` defaults to ``max(8, round(0.04 * min(H, W)))``: 20 px on the 512-px-wide
  benchmark images, about the size of the feature patches point-based methods supervise; ``radius=`` /
  ``--radius`` overrides.
- A sample that cannot be converted (unreadable or hostile file, odd number of points, a point off the image,
  handle equal to target, mask and image of different sizes, ...) fails alone: it is recorded with a one-line
  reason in :attr:`ConversionReport.failed` and in ``<out>/<dataset>/failed.csv`` (``sample,reason``), and the
  conversion goes on with the next sample. Points on the image border are fine.
- Source files are read through :mod:`dragnext.limits`, like every other input: only regular files are opened
  (a FIFO named ``meta_data.pkl`` would block forever, a device could act), files are read up to a size limit,
  and an image's size is checked from its header before it is decoded.
- ``meta_data.pkl`` is a pickle, so it is read with a restricted unpickler that admits only the handful of
  numpy globals an ``ndarray`` needs (:data:`ALLOWED_GLOBALS`) and refuses everything else before anything is
  called; the loaded object is then type-checked.
- A sample folder is written whole or not at all: into a hidden staging folder beside it
  (``.<sample>.<random>.partial``), renamed into place once complete. Re-converting replaces a folder this
  module wrote (recognised by its ``conversion.json``) and removes the converted files of a sample that now
  fails; a folder holding anything else is left alone and the sample fails with a reason. A conversion killed
  outright (``kill -9``) leaves its staging folder behind; the next conversion into the same folder removes such
  leftovers (by their exact names, and only those older than that run: :func:`.samples.remove_stale_staging`).

- :mod:`.conversion`: :func:`convert`, :func:`convert_dragbench`, :func:`convert_drag100` and the
  :class:`ConversionReport` they return: the loop over the samples.
- :mod:`.dragbench` and :mod:`.drag100`: reading one sample of each dataset (:func:`load_dragbench_meta`).
- :mod:`.pickles`: the restricted unpickler and :data:`ALLOWED_GLOBALS`.
- :mod:`.regions`: points into ``translate`` operations of discs, :func:`default_radius`.
- :mod:`.samples`: :func:`find_samples`, and writing a sample folder whole or not at all, and ``failed.csv``.
- :mod:`.common`: the dataset and file names, :class:`ConversionError`, values from a file in a message.
"""

from .common import DATASET_TITLES, DATASETS, FAILED_NAME, MARKER_FILES, SIDECAR_NAME, ConversionError
from .conversion import NOTE, ConversionReport, convert, convert_drag100, convert_dragbench
from .dragbench import MAX_PICKLE_BYTES, load_dragbench_meta
from .pickles import ALLOWED_GLOBALS, UnsafePickleError
from .regions import DEFAULT_RADIUS_FRACTION, DEFAULT_RADIUS_RULE, MIN_DEFAULT_RADIUS, default_radius
from .samples import find_samples

__all__ = [
    "ALLOWED_GLOBALS",
    "DATASETS",
    "DATASET_TITLES",
    "DEFAULT_RADIUS_FRACTION",
    "DEFAULT_RADIUS_RULE",
    "FAILED_NAME",
    "MARKER_FILES",
    "MAX_PICKLE_BYTES",
    "MIN_DEFAULT_RADIUS",
    "NOTE",
    "SIDECAR_NAME",
    "ConversionError",
    "ConversionReport",
    "UnsafePickleError",
    "convert",
    "convert_drag100",
    "convert_dragbench",
    "default_radius",
    "find_samples",
    "load_dragbench_meta",
]
