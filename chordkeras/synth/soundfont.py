"""SoundFont files: SF3 (Ogg Vorbis samples, as MuseScore ships them) converted to plain SF2.

midirenderer reads SF2 only. An SF3 file differs from SF2 only in its sample
data: each sample is an Ogg Vorbis stream whose `start`/`end` in the sample
header are byte offsets into `smpl`, its loop points are sample offsets from the
sample's own start, and its type carries flag 0x10. Decoding every stream with
soundfile (libsndfile reads Vorbis) and rewriting `smpl` and `shdr` gives an
SF2 any renderer accepts. Converted files are cached by content hash.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path

import numpy as np

from chordkeras.files import write_bytes_atomic

_VORBIS = 0x10
_SHDR_RECORD = struct.Struct("<20s5IBbHH")    # name, start, end, loopstart, loopend, rate, key, correction, link, type
_ZERO_PAD = 46                                  # zero sample words after each sample (SoundFont 2.01 spec)


def _chunks(data: bytes, offset: int, end: int):
    """(id, data offset, size) of the RIFF chunks in data[offset:end].

    Word-alignment padding is honoured when present; some SF3 writers omit it.
    """
    while offset + 8 <= end:
        cid = data[offset:offset + 4]
        size = struct.unpack_from("<I", data, offset + 4)[0]
        yield cid, offset + 8, size
        following = offset + 8 + size
        if size & 1 and not data[following:following + 4].isalnum() and data[following + 1:following + 5].isalnum():
            following += 1
        offset = following


def _chunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


def is_sf3(path: os.PathLike | str) -> bool:
    """Whether the file is a SoundFont with Vorbis-compressed samples (version 3)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        return False
    at = head.find(b"ifil")
    return at >= 0 and struct.unpack_from("<H", head, at + 8)[0] >= 3


_PHDR_RECORD = struct.Struct("<20sHHHIII")     # name, preset, bank, bag index, library, genre, morphology


def _lists(data: bytes) -> dict[bytes, tuple[int, int]]:
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ValueError("not a SoundFont (RIFF sfbk) file")
    lists = {}
    for cid, offset, size in _chunks(data, 12, len(data)):
        if cid == b"LIST":
            lists[data[offset:offset + 4]] = (offset + 4, offset + size)
    return lists


def presets(path: os.PathLike | str) -> set[tuple[int, int]]:
    """(bank, program) of every preset in a SoundFont (SF2 or SF3), from its preset headers.

    Renderers such as midirenderer play a missing preset with another one, silently; this is what a
    caller checks a part's program against. General MIDI melodic presets are bank 0, drum kits bank 128.

    Raises:
        ValueError: not a SoundFont, or one without preset headers.
    """
    data = Path(path).read_bytes()
    lists = _lists(data)
    if b"pdta" not in lists:
        raise ValueError(f"{path}: SoundFont without a pdta list")
    phdr = next((data[o:o + n] for c, o, n in _chunks(data, *lists[b"pdta"]) if c == b"phdr"), None)
    if phdr is None:
        raise ValueError(f"{path}: SoundFont without preset headers (phdr)")
    records = [_PHDR_RECORD.unpack_from(phdr, i) for i in range(0, len(phdr) - _PHDR_RECORD.size + 1, _PHDR_RECORD.size)]
    return {(bank, program) for _, program, bank, *_ in records[:-1]}     # the last record ends the list (EOP)


def sf3_to_sf2(data: bytes) -> bytes:
    """Converts SF3 bytes to SF2 bytes (samples decoded to 16-bit PCM).

    Raises:
        ValueError: not a RIFF sfbk file, or missing sdta/pdta.
    """
    import soundfile

    lists = _lists(data)
    if b"sdta" not in lists or b"pdta" not in lists or b"INFO" not in lists:
        raise ValueError("SoundFont without INFO, sdta or pdta list")
    smpl = next(((o, s) for c, o, s in _chunks(data, *lists[b"sdta"]) if c == b"smpl"), None)
    pdta = [(c, data[o:o + s]) for c, o, s in _chunks(data, *lists[b"pdta"])]
    shdr = next(p for c, p in pdta if c == b"shdr")
    if smpl is None:
        raise ValueError("SoundFont without sample data")
    smpl_offset, smpl_size = smpl

    pieces, records, position = [], [], 0
    for k in range(len(shdr) // _SHDR_RECORD.size):
        name, start, end, loop_start, loop_end, rate, key, corr, link, kind = _SHDR_RECORD.unpack_from(shdr, k * _SHDR_RECORD.size)
        if k == len(shdr) // _SHDR_RECORD.size - 1:          # terminal "EOS" record
            records.append(_SHDR_RECORD.pack(name, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            break
        if kind & _VORBIS:
            stream = data[smpl_offset + start:smpl_offset + min(end, smpl_size)]
            pcm, _ = soundfile.read(io.BytesIO(stream), dtype="int16")
            pcm = pcm if pcm.ndim == 1 else pcm[:, 0]
            kind &= ~_VORBIS
        else:
            pcm = np.frombuffer(data, "<i2", count=end - start, offset=smpl_offset + 2 * start)
            loop_start, loop_end = loop_start - start, loop_end - start
        n = len(pcm)
        pieces += [pcm.astype("<i2").tobytes(), bytes(2 * _ZERO_PAD)]
        records.append(_SHDR_RECORD.pack(name, position, position + n, position + min(loop_start, n),
                                         position + min(loop_end, n), rate, key, corr, link, kind))
        position += n + _ZERO_PAD

    info = b"".join(
        _chunk(c, struct.pack("<HH", 2, 1) if c == b"ifil" else data[o:o + s])
        for c, o, s in _chunks(data, *lists[b"INFO"])
    )
    sdta = _chunk(b"smpl", b"".join(pieces))
    pdta_bytes = b"".join(_chunk(c, b"".join(records) if c == b"shdr" else p) for c, p in pdta)
    body = b"sfbk" + _chunk(b"LIST", b"INFO" + info) + _chunk(b"LIST", b"sdta" + sdta) + _chunk(b"LIST", b"pdta" + pdta_bytes)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def cache_dir() -> Path:
    """Where converted SoundFonts are kept: $CHORDKERAS_CACHE, else ~/.cache/chordkeras."""
    root = os.environ.get("CHORDKERAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "chordkeras")
    return Path(root) / "soundfonts"


def as_sf2(path: os.PathLike | str) -> Path:
    """`path` itself for an SF2 file; for SF3 the converted SF2 in the cache (made once)."""
    path = Path(path)
    if not is_sf3(path):
        return path
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = cache_dir() / f"{path.stem}-{digest}.sf2"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, sf3_to_sf2(data))
    return target
