"""JSON and atomic file writes: a file under its final name is always complete.

Every file the package writes goes through here. Free of TensorFlow so that annotation and
generator code can use it without loading TF.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import uuid
from typing import Any, Iterator


def temporary_name(path: str | os.PathLike) -> str:
    """A hidden, unique temporary name in the same folder as `path` (so the rename is atomic)."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, temporary: str | os.PathLike | None = None) -> Iterator[pathlib.Path]:
    """Yields a temporary name beside `path` to write a file or a folder under; renames it into place.

    The caller writes under the yielded name; when the block ends without an error the result
    replaces `path` (an existing folder there is first renamed to `<path>.previous`, put back by the
    next call if a kill lands between the two renames). On any failure the temporary file or folder
    is removed and an existing `path` is left as it was.

    Args:
        path: The final name.
        temporary: A fixed temporary name in the same folder, for large outputs (shards, exports):
            what a killed run left under it is removed first, instead of piling up under unique
            names. Default: a unique hidden name (`temporary_name`), created by nobody beforehand,
            so writers that refuse an existing file can use it.
    """
    tmp = pathlib.Path(temporary if temporary is not None else temporary_name(path))
    previous = pathlib.Path(f"{os.fspath(path)}.previous")
    if previous.is_dir() and not os.path.exists(path):
        # A kill between the two renames below: the previous folder is complete, put it back.
        os.replace(previous, path)
    _remove(previous)
    _remove(tmp)
    try:
        yield tmp
        # A folder cannot replace another in one rename: the old one steps aside first, so at every
        # instant one complete version exists (under `path`, or `<path>.previous` until the next write).
        if os.path.isdir(path) and not os.path.islink(path):
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _remove(previous)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8, newlines as given) under a temporary name, then renames it into place.

    On any failure the temporary file is removed and an existing file at `path` is left as it was.
    """
    with atomic_output(path) as tmp:
        # open(..., "x") rather than mkstemp: the finished file gets the usual umask permissions.
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            f.write(text)


def replace_synced(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Flushes the finished file `tmp` to disk, then renames it to `path` (same folder: atomic)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` under a temporary name, then renames it into place (see `write_text_atomic`)."""
    with atomic_output(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)


def write_json_atomic(path: str | os.PathLike, obj: Any, sort_keys: bool = True) -> None:
    """Writes `obj` as indented JSON (keys sorted unless `sort_keys` is False), atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Reads a UTF-8 JSON file; a damaged one raises ValueError naming the file."""
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
