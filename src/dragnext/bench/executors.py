"""Where a benchmark's edits run: here (:class:`LocalExecutor`, the default) or on Ray actors (:class:`RayExecutor`).

Either way the driver (``runner.run_benchmark_on``) alone writes ``results.csv``, the outputs, ``failed.csv`` and
``run.json``, so a run that one executor started, the other can resume.

:class:`RayExecutor`:

- One actor per worker loads the model once, from its settings (:class:`ModelSettings`: the loaded model never
  travels), and the perceptual distance; it then edits and scores what it is sent and returns the row and the
  output image. Each actor reserves ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs and runs torch on that
  many threads.
- A worker runs one sample at a time: the sample's pending methods are queued on it in order, so a LoRA or an
  inversion it caches for the sample serves every method, as it does in a local run. Samples go to whichever
  worker is free first; rows come back in the order they finish.
- A worker that dies (killed, out of memory, its node lost) or fails outside an edit loses the unfinished pairs of
  its current sample; a fresh actor takes its place and the pairs run again, on whichever worker is free next, up
  to ``max_retries`` times. Then they become failed rows (``WorkerLost: ...``) and the run goes on.
- An interrupt (Ctrl-C) in the driver kills the actors (and stops the Ray instance if this run started it); every
  finished row is already on disk.

``ray`` is an optional dependency (extra ``ray``), imported only when a :class:`RayExecutor` is made.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import itertools
import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..limits import one_line
from ..perceptual import LPIPSDistance, PerceptualDistance
from .runner import BenchError, Edited, Job, LocalExecutor, edit_pair
from .suites import request_type

__all__ = ["LocalExecutor", "ModelSettings", "RayExecutor", "RayUnavailableError"]

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[ray]"'
# Passed from the driver to every worker where set: caches and hub folders of the run, not of the Ray installation.
FORWARDED_ENV = ("DRAGNEXT_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "TORCH_HOME")


class RayUnavailableError(BenchError):
    """``--executor ray`` without the ``ray`` package; the message says how to install it."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or a one-line :class:`RayUnavailableError` naming the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise RayUnavailableError(f"the Ray executor needs the ray package: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class ModelSettings:
    """What a worker needs to load the model itself: the CLI's ``--model``, ``--device`` and ``--bf16``."""

    model: str = "bundled"  # "bundled", a local diffusers folder or a hub id, as load_backbone takes it
    device: str | None = None  # None: cuda if the worker sees a GPU, else cpu (load_backbone's default)
    bf16: bool = False  # bf16 autocast of the UNet on CPU

    def load(self):
        import torch

        from ..models import load_backbone

        device = torch.device(self.device) if self.device else None
        return load_backbone(self.model, device=device, autocast_bf16=self.bf16)


class RayWorker:
    """The body of one Ray actor: the model and the distance, loaded once; then one pair per :meth:`edit` call.

    A model that cannot be loaded is reported by :meth:`ready` (the driver refuses to start) rather than raised,
    so the driver gets its message instead of Ray's account of a dead actor.
    """

    def __init__(self, model: ModelSettings, distance: PerceptualDistance | str, threads: int, env: dict[str, str]):
        import torch

        from ..perceptual import load_distance
        from .memory import PeakMemory

        os.environ.update(env)
        torch.set_num_threads(threads)
        self.failure: str | None = None
        try:
            self.backbone = model.load()
            self.distance = load_distance("lpips") if distance == "lpips" else distance
        except Exception as error:  # told to the driver by ready()
            self.failure = f"{type(error).__name__}: {one_line(error)}"
            return
        self.memory = PeakMemory(self.backbone.device)

    def ready(self) -> str | None:
        """None once the model is loaded, else why it could not be."""
        return self.failure

    def edit(self, sample_id: str, data: tuple, method, config, seed: int) -> Edited:
        if self.failure:
            raise RuntimeError(self.failure)
        request, truth = copy.deepcopy(data)  # writable: the object store's arrays are read-only, unlike a local run's
        return edit_pair(self.backbone, sample_id, request, truth, method, config, self.distance, seed, self.memory)


@dataclass
class _Slot:
    """One worker as the driver sees it: its actor, the job it runs and the methods of it still to come back."""

    index: int
    actor: Any = None
    job: Job | None = None
    pending: list[str] = field(default_factory=list)
    done: int = 0  # pairs it has finished

    def status(self) -> str:
        if self.job is None:
            return f"w{self.index} idle ({self.done} done)"
        return f"w{self.index} {self.job.sample}/{self.pending[0]} ({self.done} done)"


class RayExecutor:
    """Each sample on one of ``workers`` Ray actors; the CLI's ``--executor ray [--address ADDR] [--workers N]
    [--gpus-per-worker G]``.

    - ``model``, ``device``, ``bf16``: how each worker loads the model (:class:`ModelSettings`). ``model`` may be
      a :class:`ModelSettings` itself (or another picklable object whose ``load()`` returns the backbone).
    - ``address``: a running Ray cluster (``ray start --head`` prints it; ``auto`` finds the one on this machine).
      None: ``$RAY_ADDRESS``, else a cluster started on this machine, else a new Ray instance here for this run.
      If Ray is already initialised in this process, that connection is used and left open.
    - ``workers``: actors, each with its own copy of the model. None: one per ``gpus_per_worker`` GPUs of the
      cluster, or one per node on a cluster without GPUs.
    - ``gpus_per_worker``: GPUs reserved per actor (a fraction shares a GPU). None: 1 if the cluster has GPUs, else 0.
    - ``cpus_per_worker``: CPUs reserved per actor and its torch threads. None: the cluster's CPUs shared evenly.
    - ``max_retries``: times a sample whose worker died runs again before its pairs are recorded as failed.

    Raises :class:`RayUnavailableError` when ray is not installed and :class:`BenchError` for values that cannot
    work; :meth:`run` raises :class:`BenchError` when the cluster is too small or a worker cannot load the model.
    """

    def __init__(self, model: str | ModelSettings = "bundled", *, device: str | None = None, bf16: bool = False,
                 address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None,
                 cpus_per_worker: int | None = None, max_retries: int = 2):
        if workers is not None and workers < 1:
            raise BenchError(f"--workers must be at least 1, got {workers}")
        if gpus_per_worker is not None and gpus_per_worker < 0:
            raise BenchError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker}")
        if cpus_per_worker is not None and cpus_per_worker < 1:
            raise BenchError(f"cpus per worker must be at least 1, got {cpus_per_worker}")
        if max_retries < 0:
            raise BenchError(f"max_retries must be >= 0, got {max_retries}")
        import_ray()
        self.model = ModelSettings(model, device, bf16) if isinstance(model, str) else model
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.max_retries = max_retries

    def run(self, jobs: Iterable[Job], distance: PerceptualDistance, seed: int,
            progress: Callable[[str], None]) -> Iterator[Edited]:
        # 1. Ray (the caller's connection, or one for this run), unless every pair is done already
        source = iter(jobs)
        first = next(source, None)
        if first is None:
            return
        jobs = itertools.chain([first], source)
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False)
            except (ConnectionError, ValueError) as error:  # no cluster at that address, or a malformed one
                where = f"--address {self.address}" if self.address else "Ray"
                raise BenchError(f"{where}: {one_line(error)}") from None
        slots: list[_Slot] = []
        try:
            # 2. the actors, each loading the model
            workers, cpus, gpus = self._shape(ray)
            worker_class = ray.remote(RayWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
            env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
            portable = "lpips" if isinstance(distance, LPIPSDistance) else distance  # its network loads there

            def spawn() -> Any:
                return worker_class.remote(self.model, portable, max(1, int(cpus)), env)

            slots = [_Slot(index, spawn()) for index in range(workers)]
            progress(f"starting {workers} Ray workers ({cpus:g} CPU, {gpus:g} GPU each)")
            self._check_ready(ray, slots)
            logger.info("%d Ray workers ready (%g CPU, %g GPU each)", workers, cpus, gpus)
            # 3. samples to free workers, rows back as they finish
            yield from self._loop(ray, slots, spawn, jobs, distance, seed, progress)
        finally:
            for slot in slots:
                ray.kill(slot.actor)
            if started:
                ray.shutdown()

    def _shape(self, ray: ModuleType) -> tuple[int, float, float]:
        """(workers, CPUs per worker, GPUs per worker) on this cluster; BenchError if they do not fit."""
        total = ray.cluster_resources()
        total_cpus, total_gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
        gpus = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if total_gpus else 0.0)
        workers = self.workers
        if workers is None:
            nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
            workers = max(1, int(total_gpus // gpus) if gpus else nodes)
        cpus = float(self.cpus_per_worker or max(1, int(total_cpus // workers)))
        if workers * cpus > total_cpus or workers * gpus > total_gpus:
            raise BenchError(f"{workers} Ray workers with {cpus:g} CPU and {gpus:g} GPU each need more than the "
                             f"cluster has ({total_cpus:g} CPU, {total_gpus:g} GPU); use fewer --workers or "
                             "--gpus-per-worker")
        return workers, cpus, gpus

    @staticmethod
    def _check_ready(ray: ModuleType, slots: list[_Slot]) -> None:
        try:
            failures = ray.get([slot.actor.ready.remote() for slot in slots])
        except ray.exceptions.RayError as error:
            raise BenchError(f"a Ray worker could not start: {_reason(ray, error)}") from None
        for slot, failure in zip(slots, failures, strict=True):
            if failure:
                raise BenchError(f"Ray worker {slot.index} could not start: {failure}")

    def _loop(self, ray: ModuleType, slots: list[_Slot], spawn: Callable[[], Any], jobs: Iterable[Job],
              distance: PerceptualDistance, seed: int, progress: Callable[[str], None]) -> Iterator[Edited]:
        source = iter(jobs)
        retries: deque[Job] = deque()  # samples whose worker died, with their unfinished pairs
        failures: Counter[str] = Counter()  # sample -> workers lost on it
        running: dict[Any, tuple[_Slot, str]] = {}  # ObjectRef of a pair -> (its worker, its method)

        def next_job() -> Job | None:
            return retries.popleft() if retries else next(source, None)

        while True:
            for slot in slots:
                if slot.job is None and (job := next_job()) is not None:
                    data = ray.put((job.request, job.truth))  # once per sample, shared by its methods
                    for method, config in job.pairs:
                        running[slot.actor.edit.remote(job.sample, data, method, config, seed)] = (slot, method.name)
                    slot.job, slot.pending = job, [method.name for method, _ in job.pairs]
            if not running:
                return
            progress(_progress_line(slots))
            (ref,), _ = ray.wait(list(running), num_returns=1)  # the first finished, in submission order
            slot, method = running.pop(ref)
            try:
                row, image = ray.get(ref)
            except ray.exceptions.RayError as error:
                yield from self._lost(ray, slot, spawn, running, retries, failures, distance, error)
                continue
            slot.pending.remove(method)
            slot.done += 1
            if not slot.pending:
                slot.job = None
            yield row, image

    def _lost(self, ray: ModuleType, slot: _Slot, spawn: Callable[[], Any], running: dict[Any, tuple[_Slot, str]],
              retries: deque[Job], failures: Counter[str], distance: PerceptualDistance,
              error: BaseException) -> Iterator[Edited]:
        """A worker failed: replace its actor; run its sample's unfinished pairs again, or record them as failed."""
        job = slot.job
        assert job is not None
        for ref in [ref for ref, (owner, _) in running.items() if owner is slot]:  # lost with the actor
            del running[ref]
        remaining = tuple(pair for pair in job.pairs if pair[0].name in slot.pending)
        ray.kill(slot.actor)  # dead already, or alive but in an unknown state
        slot.actor, slot.job, slot.pending = spawn(), None, []
        failures[job.sample] += 1
        reason = _reason(ray, error)
        if failures[job.sample] <= self.max_retries:
            logger.warning("Ray worker %d failed on %s (%s); running it again (retry %d of %d)", slot.index,
                           job.sample, reason, failures[job.sample], self.max_retries)
            retries.appendleft(dataclasses.replace(job, pairs=remaining))
            return
        logger.warning("Ray worker %d failed on %s (%s); giving up after %d retries", slot.index, job.sample, reason,
                       self.max_retries)
        error_text = f"WorkerLost: its Ray worker failed {failures[job.sample]} times; last: {reason}"
        for method, _ in remaining:
            yield {"sample": job.sample, "type": request_type(job.request), "method": method.name,
                   "perceptual": distance.name, "status": "error", "error": error_text}, None


def _progress_line(slots: list[_Slot], each: int = 4) -> str:
    """What each worker runs and how many pairs it has done; a count of busy workers when there are many."""
    if len(slots) <= each:
        return " | ".join(slot.status() for slot in slots)
    busy = sum(slot.job is not None for slot in slots)
    done = [slot.done for slot in slots]
    return f"{busy}/{len(slots)} workers busy, {min(done)}-{max(done)} pairs done each"


def _reason(ray: ModuleType, error: BaseException) -> str:
    """One line on why a Ray call failed: the task's own exception if there is one, else Ray's first line."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
        return f"{type(cause).__name__}: {one_line(cause)}"
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:200]}"
