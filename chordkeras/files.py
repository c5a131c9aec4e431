"""Atomic file writes: a file under its final name is always complete.

Free of TensorFlow so that annotation and generator code can use it without loading TF.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any


def temporary_name(path: str | os.PathLike) -> str:
    """A hidden, unique temporary name in the same folder as `path` (so the rename is atomic)."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8, newlines as given) under a temporary name, then renames it into place.

    On any failure the temporary file is removed and an existing file at `path` is left as it was.
    """
    tmp = temporary_name(path)
    try:
        # open(..., "x") rather than mkstemp: the finished file gets the usual umask permissions.
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def replace_synced(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Flushes the finished file `tmp` to disk, then renames it to `path` (same folder: atomic)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented, key-sorted JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
