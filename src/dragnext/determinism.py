"""Reproducible edits: pin what makes torch's results vary between runs of the same edit.

What is guaranteed: the same request, settings and seed, with the same model, on the same machine (same CPU or
GPU model, same torch and diffusers versions) and the same number of torch threads, give the same bytes. That
holds by default on a CPU; ``make_deterministic`` adds what a GPU needs (deterministic kernels, a fixed cuBLAS
workspace) and pins the thread count.

What is not: identical bytes across thread counts (a UNet forward differs in the last bits between 1 and 2
threads, because reductions are split differently), across CPU or GPU models, or across library versions. A
different ``threads`` is a different result, as a different seed is.

These settings are process-wide, so they are a function to call, not an ``EditConfig`` field: a setting of one
edit cannot change how the rest of the process computes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# cuBLAS picks its reduction order from the workspace it is given; a fixed configuration makes it repeatable
# (https://docs.nvidia.com/cuda/cublas/index.html#results-reproducibility). It must be set before cuBLAS starts.
CUBLAS_WORKSPACE = ":4096:8"


def make_deterministic(threads: int = 1) -> None:
    """Pin torch to ``threads`` intra-op threads and to deterministic algorithms, for the rest of the process.

    An operation that has no deterministic implementation then raises a RuntimeError instead of varying.
    """
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False  # benchmarking picks the fastest kernel per run, which may differ


@contextlib.contextmanager
def deterministic(threads: int = 1) -> Iterator[None]:
    """``make_deterministic`` for a block of code; the previous settings are restored after it."""
    import torch

    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
                os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        make_deterministic(threads)
        yield
    finally:
        threads_before, enabled, warn_only, benchmark, workspace = previous
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace
