"""Song generation end to end: plan -> arrangement -> audio + .lab, in parallel, with a manifest.

Song `i` of a run is drawn from `numpy.random.default_rng([seed, i])` alone, so the
output does not depend on the number of workers or on which songs already exist.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from chordkeras import annotations
from chordkeras.files import atomic_output, read_json, write_json_atomic, write_text_atomic
from chordkeras.config import FeatureConfig
from chordkeras.synth import arrange as arrange_lib
from chordkeras.synth import harmony, recording, render, voices

# Bump when a change alters the songs a given seed produces: a folder made by another
# version is refused instead of being silently mixed.
GENERATOR_VERSION = 4     # 4: fewer seventh chords (harmony.draw_style)
MANIFEST_NAME = "manifest.csv"
SETTINGS_NAME = "synth.json"
AUDIO_FORMATS = ("flac", "wav")
# Chance that a pitched part is played by a built-in voice rather than the SoundFont: about two
# parts in five, so most songs mix both kinds of timbre.
VOICE_PROBABILITY = 0.4
# The last chord keeps its label while it rings out (release, room), as annotators of real recordings
# mark it, until its level has fallen this far below its own (or to the noise floor).
RING_OUT_DB = 30.0


@dataclasses.dataclass(frozen=True)
class Song:
    """One generated song in memory."""

    audio: np.ndarray                           # float32 [samples] mono
    sample_rate: int
    labels: list[tuple[float, float, str]]      # (onset, offset, Harte label), covering the audio
    plan: harmony.SongPlan
    arrangement: arrange_lib.Arrangement
    voices: tuple[str, ...] = ()                # parts played by built-in voices, e.g. ("singer:73",)


def song_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that decides everything about song `index` of run `seed`."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
    return np.random.default_rng([seed, index])


def make_song(seed: int, index: int, renderer, minutes_per_song: float | None = None,
              sample_rate: int | None = None,
              chain: recording.ChainRanges | None = recording.TRAINING_CHAIN,
              voice_probability: float = VOICE_PROBABILITY, ring_out_last: bool = True,
              solo: str | None = None) -> Song:
    """Plans, arranges, renders and masters one song.

    Args:
        seed: Run seed.
        index: Song number within the run.
        renderer: From `render.load_renderer` (or a `sampler.SampleRenderer`): `render(midi)`, `sample_rate`,
            `name` and `programs`, the General MIDI programs it plays itself (the others go to the voices).
        minutes_per_song: Target length; None draws 2-4 minutes per song.
        sample_rate: Output rate; defaults to FeatureConfig().sample_rate.
        chain: The recording chain's ranges (`render.master`); None renders a clean mix.
        voice_probability: Chance that each pitched part is played by a built-in voice (plucked
            string, singer, additive/FM; `chordkeras.synth.voices`) instead of the renderer.
        ring_out_last: Label the last chord for as long as it rings into the closing N (`ring_out`);
            False keeps the plan's labels, which then depend on the seed alone, not on the sound.
        solo: A family of `arrange.HARMONY_FAMILIES` playing the song alone (`arrange.arrange_solo`:
            strummed for the guitars); None arranges a band. The plan, and so the labels with
            `ring_out_last=False`, are those of the band's song of the same seed and index.

    Returns:
        The Song; its audio lasts exactly as long as its labels.
    """
    sample_rate = sample_rate or FeatureConfig().sample_rate
    rng = song_rng(seed, index)
    seconds = 60.0 * (minutes_per_song if minutes_per_song is not None else rng.uniform(2.0, 4.0))
    if seconds <= 0:
        raise ValueError(f"minutes_per_song must be positive, got {minutes_per_song}")
    plan = harmony.plan_song(rng, seconds)
    if solo is None:
        midi, arrangement = arrange_lib.arrange(plan, rng)
    else:
        midi, arrangement = arrange_lib.arrange_solo(plan, rng, solo, "strum" if solo.endswith("guitar") else None)
    # Built-in voices render at the output rate and join the mix after the renderer's parts are
    # resampled (and, for SoundFont parts, possibly formant-shifted).
    lacking = frozenset(range(128)) - renderer.programs
    midi, voiced, voice_names = voices.synthesise_parts(midi, rng, sample_rate, voice_probability, lacking)
    rate = renderer.sample_rate
    if renderer.name == render.SOUNDFONT_RENDERER and rng.random() < 0.4:
        midi, rate = render.formant_shifted(midi, int(rng.choice([-2, -1, 1, 2])), rate, sample_rate)
    audio = render.master(renderer.render(midi), rate, sample_rate, rng, chain, voiced)
    samples = int(round(plan.duration * sample_rate))
    audio = np.pad(audio[:samples], (0, max(samples - len(audio), 0)))
    labels = plan.labels()
    end = samples / sample_rate
    labels[-1] = (labels[-1][0], end, labels[-1][2])
    if ring_out_last:
        labels = ring_out(labels, audio, sample_rate)
    return Song(audio, sample_rate, labels, plan, arrangement, tuple(voice_names))


def ring_out(labels: list[tuple[float, float, str]], audio: np.ndarray, sample_rate: int,
             drop_db: float = RING_OUT_DB) -> list[tuple[float, float, str]]:
    """Extends the song's last chord into the closing N for as long as it rings.

    The chord's level is the RMS of its last second; it rings while the short-term level (23 ms
    windows) stays above that level less `drop_db`, and above the noise floor (the RMS of the song's
    opening N, which precedes every note) plus 6 dB. Nothing new is played in the closing N, so
    what sounds there is the last chord's release and reverberation (N passages inside a song may
    hold drums, and keep their label).

    Args:
        labels: (onset, offset, label) covering the audio, adjacent labels different.
        audio: The mastered song.
        sample_rate: Its rate.

    Returns:
        The labels with the last chord's ring-out moved from the closing N to the chord.
    """
    if len(labels) < 2 or labels[-1][2] != "N" or labels[-2][2] == "N":
        return labels
    hop = 512
    frames = len(audio) // hop
    power = np.mean(np.square(audio[:frames * hop].astype(np.float64)).reshape(frames, hop), axis=1)

    def frame(t: float) -> int:
        return min(int(t * sample_rate) // hop, frames)

    def level(start: float, stop: float) -> float:
        span = power[frame(start):max(frame(stop), frame(start) + 1)]
        return float(np.mean(span)) if len(span) else 0.0

    floor = level(labels[0][0], labels[0][1]) if labels[0][2] == "N" else 0.0
    (c_start, c_end, chord), (n_start, n_end, _) = labels[-2], labels[-1]
    threshold = max(level(max(c_start, c_end - 1.0), c_end) * 10 ** (-drop_db / 10), 4.0 * floor)
    quiet = np.flatnonzero(power[frame(n_start):frame(n_end)] < threshold)
    rings_until = n_end if not len(quiet) else min(n_end, (frame(n_start) + quiet[0]) * hop / sample_rate)
    if rings_until <= n_start:
        return labels
    extended = labels[:-2] + [(c_start, rings_until, chord)]
    return extended + ([(rings_until, n_end, "N")] if rings_until < n_end else [])


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (Linux), else all (macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def song_names(index: int, audio_format: str) -> tuple[str, str]:
    return f"song_{index:05d}.{audio_format}", f"song_{index:05d}.lab"


def _write_audio(path: Path, audio: np.ndarray, sample_rate: int, audio_format: str) -> None:
    import soundfile

    with atomic_output(path) as tmp:
        soundfile.write(tmp, audio, sample_rate, format=audio_format.upper(), subtype="PCM_16")



def write_song(song: Song, out_dir: Path, index: int, audio_format: str) -> None:
    """Writes audio then .lab, each through a temporary name; the .lab marks a finished song."""
    audio_name, lab_name = song_names(index, audio_format)
    _write_audio(out_dir / audio_name, song.audio, song.sample_rate, audio_format)
    annotations.write_lab(out_dir / lab_name, [annotations.Segment(s, e, l) for s, e, l in song.labels])


def soundfont_index(seed: int, index: int, count: int) -> int:
    """Which of `count` SoundFonts renders song `index`; drawn apart from the music, which stays the same."""
    return 0 if count == 1 else int(np.random.default_rng([seed, index, 1]).integers(count))


# Per-process renderers, built once by the pool initialiser (SoundFont bytes stay loaded).
_WORKER: dict = {}


def _init_worker(renderer_name: str, soundfonts: list[str | None], settings: dict) -> None:
    if renderer_name == render.ADDITIVE_RENDERER:
        _WORKER["renderers"] = [render.AdditiveRenderer()]
    else:
        _WORKER["renderers"] = [render.SoundFontRenderer(path) for path in soundfonts]
    _WORKER["settings"] = settings


def _work(task: tuple[str, int]) -> int:
    out_dir, index = task
    s = _WORKER["settings"]
    renderers = _WORKER["renderers"]
    renderer = renderers[soundfont_index(s["seed"], index, len(renderers))]
    chain = recording.TRAINING_CHAIN if s["recording_chain"] else None
    song = make_song(s["seed"], index, renderer, s["minutes_per_song"], s["sample_rate"], chain, s["voice_probability"],
                     s["ring_out"])
    write_song(song, Path(out_dir), index, s["audio_format"])
    return index


@contextlib.contextmanager
def _main_module_hidden():
    """Keeps spawned workers from re-running the parent's `__main__` module.

    A spawned child first re-imports the parent's main module; from a training CLI
    that imports TensorFlow this costs seconds and hundreds of MB per worker, and
    the workers need only this module. Pool workers start inside this block.
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__spec__", "__file__") if hasattr(main, name)}
    try:
        if main is not None:
            main.__spec__ = None
            if "__file__" in saved:
                del main.__file__
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _settings(seed, minutes_per_song, audio_format, renderers, sample_rate, voice_probability, recording_chain,
              ring_out_last) -> dict:
    fonts = [Path(r.soundfont) for r in renderers if r.soundfont is not None]
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "minutes_per_song": None if minutes_per_song is None else float(minutes_per_song),
        "voice_probability": float(voice_probability),
        "recording_chain": bool(recording_chain),
        "ring_out": bool(ring_out_last),
        "audio_format": audio_format,
        "sample_rate": int(sample_rate),
        "renderer": renderers[0].name,
        "soundfonts": [{"name": f.name, "bytes": f.stat().st_size} for f in fonts],
    }


def generate_songs(out_dir: os.PathLike | str, num_songs: int, seed: int,
                   soundfont: os.PathLike | str | Sequence[os.PathLike | str] | None = None,
                   minutes_per_song: float | None = None, workers: int | None = None,
                   audio_format: str = "flac", voice_probability: float = VOICE_PROBABILITY,
                   recording_chain: bool = True, ring_out_last: bool = True) -> Path:
    """Generates `num_songs` songs (audio + .lab) and a manifest CSV into `out_dir`.

    Deterministic for (seed, song index, settings). Songs whose audio and .lab both
    exist are kept, so an interrupted or smaller earlier run is resumed/extended.

    Args:
        out_dir: Output folder (created).
        num_songs: Number of songs.
        seed: Run seed (non-negative).
        soundfont: .sf2 or .sf3 file, or several (each song is rendered with one of them, chosen
            by seed and index); None uses pretty_midi's TimGM6mb.sf2 (additive fallback if no
            renderer loads).
        minutes_per_song: Length of every song; None draws 2-4 minutes per song.
        workers: Processes; None uses every available core.
        audio_format: "flac" or "wav".
        voice_probability: Chance that a pitched part is played by a built-in voice (`make_song`).
        recording_chain: Whether songs go through the randomised recording chain (else clean mixes).
        ring_out_last: Whether the last chord is labelled while it rings (`make_song`).

    Returns:
        Path of `manifest.csv` (columns audio,annotation, paths relative to `out_dir`).

    Raises:
        ValueError: bad arguments, or `out_dir` holds songs made with other settings.
    """
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    if num_songs < 0 or seed < 0:
        raise ValueError(f"num_songs and seed must be non-negative, got {num_songs}, {seed}")
    if minutes_per_song is not None and minutes_per_song <= 0:
        raise ValueError(f"minutes_per_song must be positive, got {minutes_per_song}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fonts = [soundfont] if soundfont is None or isinstance(soundfont, (str, os.PathLike)) else list(soundfont)
    if not fonts:
        raise ValueError("soundfont is an empty list; pass None for the default SoundFont")
    renderers = [render.load_renderer(font) for font in fonts]
    sample_rate = FeatureConfig().sample_rate
    if not 0.0 <= voice_probability <= 1.0:
        raise ValueError(f"voice_probability must be in [0, 1], got {voice_probability}")
    settings = _settings(seed, minutes_per_song, audio_format, renderers, sample_rate, voice_probability,
                         recording_chain, ring_out_last)
    settings_path = out_dir / SETTINGS_NAME
    if settings_path.exists():
        previous = read_json(settings_path)
        if previous != settings:
            changed = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
            raise ValueError(f"{out_dir} holds songs generated with other settings (old, new): {changed}; "
                             "use another folder")
    else:
        write_json_atomic(settings_path, settings)

    missing = [i for i in range(num_songs)
               if not all((out_dir / name).exists() for name in song_names(i, audio_format))]
    workers = max(1, min(workers or usable_cpus(), len(missing) or 1))
    if missing:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(missing), desc=f"synth songs ({renderers[0].name})", unit="song")
        tasks = [(str(out_dir), i) for i in missing]
        paths = [None if r.soundfont is None else str(r.soundfont) for r in renderers]
        init = (renderers[0].name, paths, settings)
        if workers == 1:
            _init_worker(*init)
            for task in tasks:
                _work(task)
                progress.update()
        else:
            # spawn: safe next to TensorFlow/threads in the parent, and identical on every platform.
            with _main_module_hidden():
                pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, init)
            with pool:
                for _ in pool.imap_unordered(_work, tasks):
                    progress.update()
        progress.close()

    manifest = out_dir / MANIFEST_NAME
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["audio", "annotation"])
    writer.writerows(song_names(i, audio_format) for i in range(num_songs))
    write_text_atomic(manifest, text.getvalue())
    return manifest
