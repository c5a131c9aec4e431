"""What preparation takes in: one song per `SongInput`, whichever source listed it.

Its own module so that every source of songs (folders and CSV manifests in `chordkeras.preparation`,
collections in `chordkeras.mirdata_source`) can make them without importing preparation, which
imports the sources.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SongInput:
    """One song to prepare.

    Attributes:
        song_id: The relative path stem (folder, manifest) or '<collection>/<track id>' (mirdata).
        audio, annotation: Absolute paths; annotation None when there is none.
        split: The source's own split, or None for the seeded split.
        source: Label of the source the song comes from (its folder, manifest or collection).
        checksums: (path, md5) pairs the files must match before the song is used.
        problem: (kind, reason) when the source already knows the song cannot be used; it is
            then skipped and listed like any other bad input.
    """

    song_id: str
    audio: str
    annotation: str | None
    split: str | None = None
    source: str | None = None
    checksums: tuple[tuple[str, str], ...] = ()
    problem: tuple[str, str] | None = None
