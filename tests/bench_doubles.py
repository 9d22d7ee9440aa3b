"""Stand-ins for edit methods and samples, so the benchmark's bookkeeping is tested without a model."""

from __future__ import annotations

from dragnext.editor import EditResult, PassCounts


def copy_method(backbone, request, config, *, seed=0, progress=None) -> EditResult:
    """A 'method' that returns the input: the runner's bookkeeping without a model."""
    return EditResult(image=request.image.copy(), config=config, timings={"edit": 0.0}, passes=PassCounts(forward=1))


def failing_method(backbone, request, config, *, seed=0, progress=None) -> EditResult:
    raise RuntimeError("injected\nfailure")


def broken_sample() -> tuple:
    raise FileNotFoundError("image.png is missing")
