"""Many instruction files edited with one loaded model: one output each, failures recorded, the run goes on.

``dragnext edit a.json b.json ... -o OUTDIR/`` (or a folder of instruction files, or a glob) runs through
:func:`edit_files`. Files that edit the same picture with the same prompt share an :class:`EditSession`, so the
second and later ones reuse its inversion and LoRA; each result says what it reused. Outputs are
``OUTDIR/<file stem>.png`` (and ``<stem>-preview.png`` with previews), each written whole; a file that cannot be
read or edited becomes a line of ``OUTDIR/failed.csv`` (``file,reason``), written whenever the run stops.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config import EditConfig
from .files import write_png_atomic, write_text_atomic
from .instructions import load_instructions
from .limits import InputError, one_line, quote_path

if TYPE_CHECKING:  # torch loads only when edits run: the CLI checks its arguments first
    from .editor import EditResult
    from .models.base import Backbone
    from .session import EditSession

logger = logging.getLogger(__name__)

FAILED = "failed.csv"
# Sessions kept at once: each holds a picture's latents and trajectory (a few MB at SD size).
KEPT_SESSIONS = 4
GLOB_CHARACTERS = frozenset("*?[")


@dataclass
class FileOutcome:
    file: Path
    output: Path | None = None  # None: failed
    reason: str = ""  # why it failed
    result: EditResult | None = None
    shared_with: Path | None = None  # the earlier file whose inversion (and LoRA) this one reused


@dataclass
class BatchReport:
    outcomes: list[FileOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.output is None]


def instruction_files(arguments: Iterable[str]) -> list[Path]:
    """Paths, folders (their ``*.json``, sorted) and globs -> instruction files, in order, without repeats.

    Raises :class:`InputError` (one line) for a name that matches nothing, or for two files whose outputs would
    have the same name (the same stem).
    """
    found: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if is_folder(path):
            matches = sorted(p for p in path.glob("*.json") if p.is_file())
            if not matches:
                raise InputError(f"{quote_path(argument)}: the folder holds no instruction files (*.json)")
        elif GLOB_CHARACTERS & set(argument):
            matches = sorted(Path(p) for p in glob.glob(argument) if Path(p).is_file())
            if not matches:
                raise InputError(f"{quote_path(argument)}: no file matches")
        else:
            matches = [path]
        found += [m for m in matches if m not in found]
    stems: dict[str, Path] = {}
    for path in found:
        if path.stem in stems:
            first, second = quote_path(str(stems[path.stem])), quote_path(str(path))
            raise InputError(f"{first} and {second} would both be written as {quote_path(path.stem + '.png')}; "
                             "rename one")
        stems[path.stem] = path
    return found


def is_folder(path: Path) -> bool:
    """``path.is_dir()``, False for a name the file system refuses (too long, a NUL byte) instead of raising: such
    a name then fails alone, with one line, when it is read."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def output_paths(out_dir: Path, file: Path) -> tuple[Path, Path]:
    """(output, preview) of one instruction file."""
    return out_dir / f"{file.stem}.png", out_dir / f"{file.stem}-preview.png"


def _error_text(error: BaseException) -> str:
    """One line: an input error's own message, otherwise the exception's type and message."""
    text = one_line(error)
    return text if isinstance(error, InputError) else f"{type(error).__name__}: {text}"


def _check_not_an_input(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    read = {p.resolve() for p in inputs}
    for output in outputs:
        if output.resolve() in read:
            raise InputError(f"{quote_path(str(output))} is a file this edit reads; write the outputs to another "
                             "folder")


def write_failures(out_dir: Path, report: BatchReport) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("file", "reason"))
    writer.writerows((str(o.file), o.reason) for o in report.failed)
    return write_text_atomic(out_dir / FAILED, text.getvalue())


def edit_files(backbone: Backbone, files: Sequence[Path], out_dir: Path, config: EditConfig | None = None, *,
               seed: int = 0, previews: bool = False,
               on_file: Callable[[FileOutcome], None] | None = None) -> BatchReport:
    """Edit every instruction file with ``backbone`` into ``out_dir`` (module docstring); ``on_file`` is called
    after each file, failed or not. A KeyboardInterrupt stops the run after writing ``failed.csv``."""
    from .session import EditSessions
    from .visualize import draw_instructions, side_by_side

    out_dir.mkdir(parents=True, exist_ok=True)
    report = BatchReport()
    sessions = EditSessions(backbone, config, kept=KEPT_SESSIONS)
    first_files: dict[EditSession, Path] = {}  # the file that opened each session
    try:
        for file in files:
            outcome = FileOutcome(file)
            try:
                request = load_instructions(file)
                output, preview = output_paths(out_dir, file)
                _check_not_an_input([output, preview] if previews else [output], request.files)
                session = sessions.get(request.image, request.prompt)
                first = first_files.setdefault(session, file)
                result = session.edit(request.operations, editable_mask=request.editable_mask, seed=seed)
                write_png_atomic(output, result.image)
                if previews:
                    overlay = draw_instructions(request.image, request.operations, request.editable_mask)
                    write_png_atomic(preview, side_by_side([overlay, result.image], ["input", "output"]))
                outcome.output, outcome.result = output, result
                outcome.shared_with = first if result.reused else None
            except (ValueError, RuntimeError, OSError) as error:  # InputError is a ValueError
                outcome.reason = _error_text(error)
                logger.warning("%s: %s", file, outcome.reason)
            report.outcomes.append(outcome)
            if on_file is not None:
                on_file(outcome)
    finally:
        write_failures(out_dir, report)
    return report
