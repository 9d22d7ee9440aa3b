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


def interrupted_on_edit(number: int):
    """A method that copies like :func:`copy_method` and raises KeyboardInterrupt at its ``number``-th edit."""
    calls = []

    def method(backbone, request, config, *, seed=0, progress=None) -> EditResult:
        calls.append(request)
        if len(calls) == number:
            raise KeyboardInterrupt
        return copy_method(backbone, request, config)

    return method
