"""Peak memory, the way the benchmark reports it: CUDA's allocator peak on a GPU, the process's peak RSS on a CPU.

On Linux a process can reset its own RSS high-water mark (``VmHWM``) by writing ``5`` to
``/proc/self/clear_refs``; ``reset_peak_rss`` does that where it can, so a peak can be taken per pass kind.
Elsewhere (macOS, a locked-down ``/proc``) the peak only grows over the process's life.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """The process's peak resident set size in MiB (since start, or since the last ``reset_peak_rss``)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS; False where the system does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory of one edit: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the process's peak RSS,
    which the benchmark loop lets grow over a run, so it bounds each edit's peak from above."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.device = device
        self.kind = ("CUDA max_memory_allocated per edit" if self.cuda
                     else "process peak RSS (CPU; monotone over the run, so an upper bound per edit)")

    def start(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def read_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return peak_rss_mb()
