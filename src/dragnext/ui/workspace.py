"""The server's files for the page: one folder per browser tab, and files published once under new names.

Two rules keep what a browser fetches whole:

- A file handed to the page is never written again, moved or truncated: pictures are named by their content
  and written once (:func:`serve_once`); downloads go into a folder made for that one response
  (:func:`new_folder`). Gradio copies each into its cache on the way out, once per content.
- A tab's folder is removed when the tab's session ends (:meth:`SessionFolders.remove`, from Gradio's
  ``unload`` and the session state's expiry), not only when the server exits. Everything the tab was shown is
  in Gradio's cache by then; a handler of the same tab still running recreates the folder it writes to.

What the server keeps, and for how long (each bounded):

- A tab's folder holds each distinct picture it was shown (once per content), and one folder per edit (the edited
  PNG and its downloads) and per download; it grows with the tab's edits and goes when the tab does. A restore
  folder goes as soon as the upload is read (:func:`dragnext.ui.uploads.read_instruction_upload`).
- Gradio's cache holds a copy of every file handed to the page and of every upload (each at most
  ``MAX_UPLOAD_MB``), and Gradio never removes them by itself while the server runs. :data:`GRADIO_CACHE_CLEANUP`
  is the ``delete_cache`` to give ``gr.Blocks``: every hour, the files the app put there more than a tab's lifetime
  ago are removed, so the cache holds at most what the tabs of the last 12 hours uploaded and were shown.

No Gradio here.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from ..files import write_png_atomic

# gr.Blocks(delete_cache=(frequency, age)), in seconds: check hourly, remove what is older than a tab may live
# (app.SESSION_TTL_SECONDS, 12 h: a tab's state, and so what it could still ask for, expires then).
GRADIO_CACHE_CLEANUP = (3600, 12 * 3600)


def new_folder(parent: str | os.PathLike[str], prefix: str) -> Path:
    """A new, empty folder ``parent/prefix-<random>``, so that nothing written into it replaces a file handed
    out before."""
    folder = Path(parent) / f"{prefix}-{secrets.token_hex(6)}"
    folder.mkdir(parents=True)
    return folder


def serve_once(image: np.ndarray, folder: str | os.PathLike[str]) -> str:
    """``image`` as a PNG in ``folder`` named by its content, written only when new; its path.

    Given an array, Gradio writes its cache file again on every response, also when the same picture comes
    back twice (a points view redrawn unchanged), and a browser still fetching the first response then reads
    a truncated file (h11: "Too little data for declared Content-Length"). A path is copied into Gradio's cache
    once, and a file named by its content never changes.
    """
    data = np.ascontiguousarray(image, dtype=np.uint8)
    digest = hashlib.sha256(str(data.shape).encode() + data.tobytes()).hexdigest()[:32]
    path = Path(folder) / f"{digest}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png_atomic(path, data)
    return str(path)


class SessionFolders:
    """One folder per browser tab under ``root``, named after the tab's session id (hashed: the id itself is a
    credential for the tab's state), made when first needed and removed when the session ends."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, session_id: str | None) -> Path:
        """The session's folder (not created). Without an id (a call outside a page session): a shared one."""
        name = hashlib.sha256((session_id or "").encode()).hexdigest()[:24] if session_id else "shared"
        return self.root / f"session-{name}"

    def folder(self, session_id: str | None) -> Path:
        """The session's folder, created if needed (again, if it was removed while the tab still ran)."""
        folder = self.path(session_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def remove(self, session_id: str | None) -> None:
        if session_id:
            shutil.rmtree(self.path(session_id), ignore_errors=True)

    def remove_folder(self, folder: str | os.PathLike[str] | None) -> None:
        """Remove a folder this object handed out (a session state's expiry knows the folder, not the id)."""
        if folder is not None and Path(folder).parent == self.root and Path(folder).name.startswith("session-"):
            shutil.rmtree(folder, ignore_errors=True)
