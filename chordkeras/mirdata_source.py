"""Songs from the public annotated collections that `mirdata` knows (Isophonics, Billboard, GuitarSet, ...).

mirdata holds each collection's layout, index and checksums; chordkeras never lets it download
anything. A collection's tracks become the same `SongInput`s a folder or CSV manifest gives:
the audio file mirdata's index names, and a `.lab` file of Harte labels converted from mirdata's
own chord loader and written under the output folder (`<out>/mirdata/<name>-<version>/`), where
it can be read. From there preparation is the same for every source.

Which collections carry chords is read from mirdata itself: a Track attribute whose return type,
or whose entry in the Track docstring, is `ChordData`. `DIALECTS` only records, per collection,
which of several chord annotations and audio files to take, and what to leave out.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import importlib
import inspect
import logging
import os
import pathlib
import re
from typing import Any, Callable

from chordkeras import annotations
from chordkeras import vocab
from chordkeras.inputs import SongInput

# mirdata's split names -> ours.
_SPLIT_NAMES = {"train": "train", "training": "train", "validation": "valid", "valid": "valid", "test": "test"}
# Errors mirdata's loaders raise on a file they cannot read (csv.Error: Beatles' delimiter sniffing).
_LOADER_ERRORS = (ValueError, OSError, IndexError, KeyError, csv.Error)


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How chordkeras reads one collection through mirdata.

    Attributes:
        chords: Track attribute (mirdata's loader) holding the chord annotation used.
        annotation_key: Index key of the file that annotation is read from (its checksum is checked).
        audio_key: Index key of the audio file.
        note: What is taken and why, shown by `--list-mirdata` and in dataset.json.
        leave_out: Track -> reason to leave it out, or None to keep it.
        harte_lab: The annotation file is Harte `start end label` lines: when mirdata's loader
            refuses it, chordkeras's own `.lab` reader (every label mir_eval reads) takes it.
    """

    chords: str
    annotation_key: str
    audio_key: str = "audio"
    note: str = ""
    leave_out: Callable[[Any], str | None] | None = None
    harte_lab: bool = False


def _guitarset_leave_out(track) -> str | None:
    if track.mode == "solo":
        return "solo excerpt: a single melodic line, the instructed chords are not played (comp excerpts are kept)"
    return None


# mirdata checks 'harte' labels against a pattern narrower than mir_eval's grammar: it refuses 'X' and
# the qualities 1, 5, sus2, aug7, 11, 13, ..., and with one such label the whole file.
_LAB_NOTE = ("Harte label files (start end label), labels unchanged; a file mirdata's loader refuses for a label "
             "its pattern lacks ('X', 'sus2', '5', ...) is read by chordkeras's .lab reader.")
DIALECTS = {
    "beatles": Dialect("chords", "chords", note="Isophonics " + _LAB_NOTE, harte_lab=True),
    "queen": Dialect("chords", "chords", note="Isophonics " + _LAB_NOTE, harte_lab=True),
    "rwc_popular": Dialect("chords", "chords", note=_LAB_NOTE, harte_lab=True),
    "billboard": Dialect(
        "chords_full", "lab_full",
        note="full.lab (chords_full), not mirdata's four reductions; salami_chords.txt, where the '&pause' and "
             "'*' markers live, is not read; 'C:5' and 'C:1' are class X with root, bass and pitches kept.",
    ),
    "guitarset": Dialect(
        "leadsheet_chords", "jams", audio_key="audio_mic",
        note="the instructed chords (the lead sheet given to the player), not the performed ones inferred "
             "from the transcription; the microphone recording; comp excerpts only.",
        leave_out=_guitarset_leave_out,
    ),
}


@dataclasses.dataclass(frozen=True)
class MirdataSource:
    """One mirdata collection as a source of songs.

    Attributes:
        name: mirdata's name of the collection ('beatles', 'billboard', ...).
        data_home: Folder holding the collection in mirdata's layout (None: mirdata's default,
            ~/mir_datasets/<name>).
        version: Collection version ('default': mirdata's default).
        index: mirdata index file to use. None: `<data_home>/<index file name>`, then mirdata's own
            index folder; either must match the checksum mirdata publishes.
        audio_checksums: Check each audio file against the md5 in the index. Off for collections
            whose audio the user rips themselves (Isophonics, Billboard, RWC): their files never
            match the researchers' rips.
    """

    name: str
    data_home: str | None = None
    version: str = "default"
    index: str | None = None
    audio_checksums: bool = True


@dataclasses.dataclass(frozen=True)
class Collection:
    """A mirdata collection with chord annotations, as `chord_collections` reports it."""

    name: str
    versions: tuple[str, ...]  # default first
    chord_attributes: tuple[str, ...]
    has_audio: bool
    dialect: Dialect | None


class MirdataError(ValueError):
    """A mirdata source that cannot be read at all (not one bad track: those are listed and skipped)."""


def _mirdata():
    try:
        import mirdata
    except ImportError:
        raise MirdataError("mirdata is not installed: pip install 'chordkeras[mirdata]'") from None
    return mirdata


@contextlib.contextmanager
def _quiet_mirdata_logging():
    # mirdata logs an ERROR for every loader whose optional package is missing; here that is expected.
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


def chord_attributes(track_class) -> tuple[str, ...]:
    """Attributes of a mirdata Track class that hold a ChordData (by return type or docstring)."""
    names = set()
    for attr in dir(track_class):
        obj = inspect.getattr_static(track_class, attr, None)
        func = getattr(obj, "func", None) or getattr(obj, "fget", None)
        if func is not None and "ChordData" in str(getattr(func, "__annotations__", {}).get("return", "")):
            names.add(attr)
    names |= set(re.findall(r"^\s*(\w+) \(ChordData\)", track_class.__doc__ or "", re.MULTILINE))
    return tuple(sorted(n for n in names if hasattr(track_class, n)))


def chord_collections() -> tuple[list[Collection], dict[str, str]]:
    """Every mirdata collection whose tracks carry chord annotations.

    Returns:
        The collections, by name, and {name: error} for loaders that could not be imported
        (they need packages of their own, e.g. music21), so could not be inspected.
    """
    mirdata = _mirdata()
    found, failed = [], {}
    for name in mirdata.list_datasets():
        with _quiet_mirdata_logging():
            try:
                module = importlib.import_module(f"mirdata.datasets.{name}")
            except ImportError as e:
                failed[name] = f"{type(e).__name__}: {e}".rstrip(": ")
                continue
        track_class = getattr(module, "Track", None)
        if track_class is None:
            continue
        attributes = chord_attributes(track_class)
        if attributes:
            # Audio is a Track property named audio or audio_* (GuitarSet: audio_mic, audio_mix, ...).
            has_audio = any(a == "audio" or a.startswith("audio_") for a in dir(track_class))
            found.append(Collection(name, _versions(module), attributes, has_audio, DIALECTS.get(name)))
    return found, failed


def _versions(module) -> tuple[str, ...]:
    """Published versions (those with a downloadable index), mirdata's default first."""
    indexes = module.INDEXES
    default = indexes.get("default")
    published = [v for v, index in indexes.items() if not isinstance(index, str) and index.remote is not None]
    return tuple(sorted(published, key=lambda v: (v != default, v)))


def md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_dataset(source: MirdataSource):
    """mirdata's Dataset for `source`, reading its index from a local file (never downloading it).

    Raises:
        MirdataError: unknown collection or version, or no usable index on this machine.
    """
    mirdata = _mirdata()
    if source.name not in mirdata.list_datasets():
        raise MirdataError(f"mirdata knows no collection {source.name!r} (python -m chordkeras.prepare --list-mirdata)")
    try:
        with _quiet_mirdata_logging():
            data_home = os.path.expanduser(source.data_home) if source.data_home else None
            dataset = mirdata.initialize(source.name, data_home=data_home, version=source.version)
    except (ValueError, ImportError) as e:
        raise MirdataError(f"mirdata {source.name}: {e}") from None
    index_info = dataset._index_data
    if source.index is not None:
        if not os.path.isfile(source.index):
            raise MirdataError(f"{source.index}: index file does not exist")
        index_path = os.path.abspath(source.index)
    else:
        candidates = [os.path.join(dataset.data_home, index_info.filename), dataset.index_path]
        index_path = next((p for p in candidates if os.path.isfile(p)), None)
        if index_path is None:
            where = index_info.remote.url if index_info.remote else "mirdata's sample indexes"
            raise MirdataError(
                f"{source.name} {dataset.version}: mirdata's index {index_info.filename} is not on this machine and "
                f"chordkeras downloads nothing: fetch it once from {where} into {dataset.data_home}, or have mirdata "
                f"fetch it (python -c \"import mirdata; mirdata.initialize('{source.name}', "
                f"version='{dataset.version}').download(partial_download=['index'])\"), or pass --index FILE"
            )
        expected = index_info.remote.checksum if index_info.remote else None
        actual = md5(index_path)
        if expected is not None and actual != expected:
            raise MirdataError(
                f"{index_path}: md5 {actual} is not the {expected} mirdata publishes for {source.name} "
                f"{dataset.version}; pass --index {index_path} to use it anyway"
            )
    # mirdata reads its index lazily from `index_path`; pointing it at the local file keeps it offline.
    dataset.index_path = index_path
    try:
        index = dataset._index
    except ValueError as e:  # json.JSONDecodeError
        raise MirdataError(f"{index_path}: not a readable mirdata index: {e}") from None
    if not isinstance(index, dict) or not isinstance(index.get("tracks"), dict):
        raise MirdataError(f"{index_path}: not a mirdata index of tracks (no 'tracks' object)")
    return dataset


def describe(source: MirdataSource, dataset, dialect: Dialect) -> dict[str, Any]:
    """What dataset.json records about a mirdata source."""
    return {
        "kind": "mirdata", "name": source.name, "version": dataset.version, "label": label(source, dataset),
        "data_home": os.path.abspath(dataset.data_home), "index": dataset.index_path, "index_md5": md5(dataset.index_path),
        "chords": dialect.chords, "annotation_key": dialect.annotation_key, "audio_key": dialect.audio_key,
        "audio_checksums": source.audio_checksums, "note": dialect.note,
    }


def label(source: MirdataSource, dataset) -> str:
    return f"mirdata:{source.name}@{dataset.version}"


def dialect_of(dataset) -> Dialect:
    """The collection's `Dialect`: from `DIALECTS`, else its only chord attribute and the file behind it.

    Raises:
        MirdataError: the collection has no chord annotation, or chordkeras cannot tell which one or
            which file to read.
    """
    if dataset.name in DIALECTS:
        return DIALECTS[dataset.name]
    attributes = chord_attributes(dataset._track_class)
    if not attributes:
        raise MirdataError(f"mirdata's {dataset.name} has no chord annotations")
    if len(attributes) > 1:
        raise MirdataError(f"mirdata's {dataset.name} has several chord annotations {attributes}; chordkeras has "
                           "no rule for which one to read")
    attribute = attributes[0]
    # mirdata's convention: attribute X is read from the file `X_path`, which is index key X.
    if dataset.track_ids and attribute in dataset._index["tracks"][dataset.track_ids[0]]:
        return Dialect(attribute, attribute, note=f"{attribute}, read unchanged.")
    raise MirdataError(f"mirdata's {dataset.name}: cannot tell which index file holds {attribute}")


def official_splits(dataset) -> dict[str, str]:
    """{track_id: split} from the collection's own split (mirdata's `get_track_splits`).

    Raises:
        MirdataError: mirdata defines no split for the collection, or one with other names.
    """
    try:
        splits = dataset.get_track_splits()
    except NotImplementedError:
        raise MirdataError(
            f"mirdata defines no official split for {dataset.name}: use --split with shares (e.g. 0.8,0.1,0.1)"
        ) from None
    unknown = sorted(set(splits) - set(_SPLIT_NAMES))
    if unknown:
        raise MirdataError(f"{dataset.name}'s official split has parts {unknown}, not train/validation/test")
    return {track_id: _SPLIT_NAMES[part] for part, ids in splits.items() for track_id in ids}


def find_inputs(source: MirdataSource, labels_root: str | os.PathLike, official_split: bool = False):
    """The collection's tracks as `SongInput`s, plus the source's description.

    A track whose audio or annotation is missing, whose annotation fails the index's checksum,
    whose annotation mirdata cannot read or whose labels are not Harte, or that its dialect
    leaves out, is listed with `problem` set; preparation skips and lists it. Audio checksums are
    left to the worker that decodes the audio (`SongInput.checksums`).
    """
    dataset = open_dataset(source)
    dialect = dialect_of(dataset)
    splits = official_splits(dataset) if official_split else {}
    source_label = label(source, dataset)
    labels_dir = pathlib.Path(labels_root) / f"{source.name}-{dataset.version}"
    index = dataset._index
    inputs = []
    for track_id in dataset.track_ids:
        entry = index["tracks"][track_id]
        audio_rel, audio_md5 = entry.get(dialect.audio_key) or (None, None)
        audio = os.path.join(dataset.data_home, audio_rel) if audio_rel else f"{dataset.data_home} [{track_id}]"
        song_id = f"{source.name}/{track_id}"
        lab = labels_dir / (track_id.replace(os.sep, "_") + ".lab")
        problem = _check_track(dataset, dialect, track_id, entry, audio, audio_rel, lab)
        checksums = ((audio, audio_md5),) if source.audio_checksums and audio_md5 and problem is None else ()
        inputs.append(SongInput(song_id, audio, str(lab) if problem is None else None, splits.get(track_id),
                                source=source_label, checksums=checksums, problem=problem))
    return inputs, describe(source, dataset, dialect)


def _check_track(dataset, dialect: Dialect, track_id: str, entry: dict, audio: str, audio_rel, lab: pathlib.Path):
    """(kind, reason) for a track that cannot be used, else None after writing its Harte `.lab`."""
    if audio_rel is None:
        return "missing audio", f"{dataset.name} {track_id}: the index lists no {dialect.audio_key} file"
    try:
        with _quiet_mirdata_logging():
            track = dataset.track(track_id)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        # mirdata's Track reads paths from the index entry as it is built; an entry lacking one fails here.
        return "bad index entry", f"{audio}: mirdata's {dataset.name} Track cannot be built from the index: {e!r}"
    if dialect.leave_out is not None:
        reason = dialect.leave_out(track)
        if reason is not None:
            return "left out", f"{audio}: {reason}"
    if not os.path.isfile(audio):
        return "missing audio", f"{audio}: audio missing (mirdata's index lists it; put it under the data home)"
    annotation_rel, annotation_md5 = entry.get(dialect.annotation_key) or (None, None)
    if annotation_rel is None:
        return "missing annotation", f"{audio}: the index lists no {dialect.annotation_key} annotation"
    annotation = os.path.join(dataset.data_home, annotation_rel)
    if not os.path.isfile(annotation):
        return "missing annotation", f"{annotation}: annotation missing (mirdata's index lists it)"
    actual = md5(annotation)
    if annotation_md5 and actual != annotation_md5:
        return "checksum", f"{annotation}: md5 {actual} is not the {annotation_md5} in mirdata's index (corrupt or another edition)"
    lab.parent.mkdir(parents=True, exist_ok=True)
    try:
        segments = _segments(dataset, dialect, track, annotation, lab)
        if not segments:
            return "bad annotation", f"{annotation}: no chord segments"
        annotations.write_lab(lab, segments)
    except (vocab.LabelError, ValueError) as e:
        return "bad annotation", str(e) if str(e).startswith(annotation) else f"{annotation}: {e}"
    return None


def _segments(dataset, dialect: Dialect, track, annotation: str, lab: pathlib.Path) -> list[annotations.Segment]:
    try:
        with _quiet_mirdata_logging():
            chords = getattr(track, dialect.chords)
    except _LOADER_ERRORS as e:
        if dialect.harte_lab:
            # The file is copied under the .lab name the reader wants (the source's suffix may differ);
            # an AnnotationError (a ValueError) then names that copy, the line and the label.
            with open(annotation, "rb") as f:
                lab.write_bytes(f.read())
            return annotations.load_annotation(lab)
        raise ValueError(f"mirdata's {dataset.name} loader cannot read it: {type(e).__name__}: {e}") from None
    if chords is None:
        return []
    return [annotations.Segment(float(start), float(end), to_harte(text))
            for (start, end), text in zip(chords.intervals, chords.labels)]


def to_harte(text: str) -> str:
    """A chord label from a mirdata loader as mir_eval reads it.

    Labels keep their spelling: the collections with chords in mirdata write Harte (or JAMS chord
    syntax, a superset `vocab` reads); only surrounding white space is removed.

    Raises:
        vocab.LabelError: the label is not valid Harte syntax.
    """
    label = text.strip()
    vocab.encode_targets(label)
    return label
