"""Generalisation across SoundFonts: the same held-out songs rendered by the training font and by others.

A model trained on generated songs is only useful if it hears chords rather than one synthesiser's
samples. This benchmark renders one set of held-out songs (a seed the training data did not use)
once per SoundFont -- the same music, labels and mix, only the instrument samples differ -- prepares
each rendering as a test-only dataset, scores the model on each with `chordkeras.evaluate`, and
prints WCSR (root, majmin, sevenths) per font with the majmin drop from the first (training) font.

Default fonts: TimGM6mb.sf2 (pretty_midi's, what the built-in data is rendered with), FluidR3_GM.sf2
(Debian fluid-soundfont-gm) and MuseScore_General_Lite.sf3 (Debian musescore-general-soundfont-small);
the Debian ones must be installed first (`sudo apt-get install fluid-soundfont-gm
musescore-general-soundfont-small`): the benchmark installs nothing, it names a missing font's
package. Without --model, the default model is trained first (`chordkeras.fit`, built-in data)
into --run-dir. Every stage resumes: songs already
rendered and shards already prepared are kept. Run from the repository root:

    python benchmarks/generalisation.py --model runs/synth-default-default/export
    python benchmarks/generalisation.py --model M --songs 40 --soundfont a.sf2 --soundfont b.sf3

Writes <out>/generalisation.json and <out>/<font>/evaluation.{json,csv} (out defaults to
`generalisation/` beside the model's export folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HELD_OUT_SEED = 7
HELD_OUT_SONGS = 40
HELD_OUT_MINUTES = 1.0
# (file, Debian package providing it); None: the SoundFont shipped with pretty_midi.
DEFAULT_SOUNDFONTS = (
    (None, None),
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small"),
)
REPORTED = ("root", "majmin", "sevenths")


@dataclasses.dataclass(frozen=True)
class Font:
    """One rendering of the held-out songs."""

    key: str                  # folder-safe name, e.g. fluidr3_gm
    path: pathlib.Path
    records: pathlib.Path     # prepared test-only dataset; audio in records / "audio"


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="export folder of a trained model (default: train the default model)")
    parser.add_argument("--run-dir", default="runs/generalisation-default",
                        help="where the default model is trained when --model is not given")
    parser.add_argument("--soundfont", action="append", default=None, metavar="PATH",
                        help=".sf2/.sf3 file, repeatable; the first is the reference (the training font). "
                             "Default: TimGM6mb, FluidR3_GM, MuseScore_General_Lite")
    parser.add_argument("--songs", type=int, default=HELD_OUT_SONGS, help=f"held-out songs (default {HELD_OUT_SONGS})")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help=f"seed of the held-out songs, not the training data's (default {HELD_OUT_SEED})")
    parser.add_argument("--minutes-per-song", type=float, default=HELD_OUT_MINUTES,
                        help=f"length of every held-out song (default {HELD_OUT_MINUTES})")
    parser.add_argument("--root", default="tfrecords",
                        help="folder for the renderings, tfrecords/generalisation-<font> (default: tfrecords)")
    parser.add_argument("--out", help="folder for the results (default: generalisation/ beside the model)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes for rendering and preparing (default: all cores)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.songs < 1 or args.minutes_per_song <= 0 or args.seed < 0:
        parser.error("--songs must be at least 1, --minutes-per-song positive and --seed non-negative")
    return args


def ensure_soundfont(path: str, package: str | None) -> pathlib.Path:
    """The SoundFont file; when it is missing, says which Debian package holds it and how to install it.

    Raises:
        ValueError: the file is missing.
    """
    target = pathlib.Path(path)
    if target.is_file():
        return target
    if package is None:
        raise ValueError(f"{target}: SoundFont not found")
    raise ValueError(f"{target} is missing: it comes with the Debian/Ubuntu package {package} "
                     f"(sudo apt-get install {package}), or pass other fonts with --soundfont")


def font_key(path: pathlib.Path) -> str:
    """Folder-safe lower-case name of a SoundFont file."""
    return "".join(c if c.isalnum() else "_" for c in path.stem.lower())


def _default_model(run_dir: pathlib.Path) -> pathlib.Path:
    """The default model (built-in data, default preset), trained in `run_dir` unless already there."""
    from chordkeras import fit

    export = run_dir / "export"
    if not (export / "model_card.json").exists():
        code = fit.main(["--run-dir", str(run_dir)])
        if code != 0 or not (export / "model_card.json").exists():
            raise ValueError(f"training the default model in {run_dir} failed (exit code {code})")
    return export


def training_data(card: dict) -> dict:
    """Seed and SoundFonts of the generated songs a model was trained on, from its card (empty if unknown)."""
    from chordkeras.synth.generate import SETTINGS_NAME

    source = (card.get("data") or {}).get("source")
    settings = pathlib.Path(source).parent / SETTINGS_NAME if source else None
    if settings is None or not settings.is_file():
        return {}
    synth = json.loads(settings.read_text())
    return {"source": source, "seed": synth.get("seed"), "minutes_per_song": synth.get("minutes_per_song"),
            "soundfonts": [f["name"] for f in synth.get("soundfonts", [])]}


def render_and_prepare(font: Font, args, features, progress: bool) -> None:
    """Renders the held-out songs with one font and prepares them as a test-only dataset (both resume)."""
    from chordkeras import files, preparation, records, synth

    recipe = {"songs": args.songs, "seed": args.seed, "minutes_per_song": args.minutes_per_song,
              "soundfont": font.path.name, "soundfont_bytes": font.path.stat().st_size,
              "features": dataclasses.asdict(features)}
    recipe_path = font.records / "generalisation_recipe.json"
    if recipe_path.exists():
        previous = files.read_json(recipe_path)
        changed = sorted(k for k in recipe if previous.get(k) != recipe[k])
        if set(changed) - {"songs"}:
            raise ValueError(f"{font.records} holds songs made with other settings ({', '.join(changed)}); "
                             "delete it or pass another --root")
        if changed:
            # Only the number of songs changed: rendered songs are kept (the generator extends a
            # folder), but the shards are planned over the whole list, so they are prepared again.
            for stale in [*font.records.glob("*.tfrecord"), *font.records.glob("*.tfrecord.json"),
                          font.records / records.DATASET_INFO]:
                stale.unlink(missing_ok=True)
    font.records.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(recipe_path, recipe)
    # Every pitched part from the font (voice_probability 0): a part played by the built-in voices
    # sounds the same under every font and would hide the difference being measured. The last
    # chord keeps its planned end: how long it rings depends on the font, and the labels must not.
    manifest = synth.generate_songs(font.records / "audio", args.songs, args.seed, soundfont=font.path,
                                    minutes_per_song=args.minutes_per_song, workers=args.workers,
                                    voice_probability=0.0, ring_out_last=False)
    if not (font.records / records.DATASET_INFO).exists():
        config = preparation.PrepareConfig(split_fractions=(0.0, 0.0, 1.0), workers=args.workers or 0)
        preparation.prepare_dataset(manifest, font.records, features, config,
                                    command=["benchmarks/generalisation.py", font.path.name], progress=progress)


def check_same_songs(fonts: list[Font], num_songs: int, features) -> dict:
    """Checks that every font holds the same songs with identical labels; summarises each font's spectrum.

    The .lab files must be byte-identical and the prepared frame labels (chord, root, bass) equal;
    the spectrograms must differ (otherwise the fonts did not render differently).

    Returns:
        {"songs", "frames", "spectrum": {font key: {"mean_level", "centroid_hz", "octave_levels"}}}.

    Raises:
        ValueError: a song is missing from a font or its labels differ between fonts.
    """
    from chordkeras import records

    from chordkeras.synth.generate import song_names

    reference = fonts[0]
    for font in fonts[1:]:
        for index in range(num_songs):
            name = song_names(index, "flac")[1]
            lab, other = reference.records / "audio" / name, font.records / "audio" / name
            if not other.exists() or other.read_bytes() != lab.read_bytes():
                raise ValueError(f"{lab.name}: labels differ between {reference.key} and {font.key}")
    frames, labels, spectra, spectrum = 0, None, {}, {}
    bins = np.arange(features.n_bins)
    hz = features.fmin * 2.0 ** (bins / features.bins_per_octave)
    for font in fonts:
        songs = {s["song_id"]: s for s in records.read_songs(font.records, "test")}
        these = {k: (s["chord"], s["root"], s["bass"]) for k, s in songs.items()}
        if labels is None:
            labels = these
            frames = sum(len(v[0]) for v in these.values())
        elif these.keys() != labels.keys():
            raise ValueError(f"{font.key} holds other songs than {reference.key}: "
                             f"{sorted(these.keys() ^ labels.keys())[:5]}")
        else:
            for song_id, arrays in these.items():
                if not all(np.array_equal(a, b) for a, b in zip(arrays, labels[song_id])):
                    raise ValueError(f"{song_id}: frame labels differ between {reference.key} and {font.key}")
        spec = np.concatenate([s["spectrogram"] for s in songs.values()])
        spectra[font.key] = spec
        # Linear magnitudes (undoing log1p(log_scale * m)) give the brightness as a spectral centroid.
        power = np.expm1(spec).mean(axis=0)
        octaves = spec[:, : features.bins_per_octave * features.n_octaves].reshape(
            len(spec), features.n_octaves, features.bins_per_octave).mean(axis=(0, 2))
        spectrum[font.key] = {"mean_level": float(spec.mean()),
                              "centroid_hz": float((power * hz).sum() / max(power.sum(), 1e-12)),
                              "octave_levels": [round(float(x), 4) for x in octaves]}
    for font in fonts[1:]:
        if np.array_equal(spectra[font.key], spectra[reference.key]):
            raise ValueError(f"{font.key} and {reference.key} rendered identical audio")
    return {"songs": len(labels), "frames": frames, "spectrum": spectrum}


def format_table(rows: list[dict], reference_note: str = "training") -> str:
    """Scores in percent per font; majmin drop = first font's majmin minus this font's, in points."""
    width = max(len("soundfont"), *(len(r["soundfont"]) for r in rows)) + len(reference_note) + 3
    head = f"{'soundfont':<{width}} {'songs':>5} {'hours':>6} " + " ".join(f"{m:>8}" for m in REPORTED)
    head += f" {'majmin drop':>11}"
    lines = [head, "-" * len(head)]
    for i, row in enumerate(rows):
        name = row["soundfont"] + (f" ({reference_note})" if i == 0 else "")
        cells = " ".join(f"{100 * row['overall'][m]:8.2f}" for m in REPORTED)
        drop = "" if i == 0 else f"{row['majmin_drop_points']:11.2f}"
        lines.append(f"{name:<{width}} {row['songs']:>5} {row['hours']:6.2f} {cells} {drop}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    seconds = {}
    from chordkeras import files, inference, scoring
    from chordkeras.config import feature_config_from_dict

    try:
        specs = ([(p, None) for p in args.soundfont] if args.soundfont else DEFAULT_SOUNDFONTS)
        paths = []
        for path, package in specs:
            if path is None:
                from chordkeras.synth import render

                paths.append(render.default_soundfont())
            else:
                paths.append(ensure_soundfont(path, package))
        keys = [font_key(p) for p in paths]
        if len(paths) < 2:
            raise ValueError("give at least two SoundFonts: the training font first, then the ones to compare")
        if len(set(keys)) != len(keys):
            raise ValueError(f"SoundFont names must differ: {[p.name for p in paths]}")
        root = pathlib.Path(args.root)
        fonts = [Font(k, p, root / f"generalisation-{k}") for k, p in zip(keys, paths)]

        tick = time.perf_counter()
        model_path = pathlib.Path(args.model) if args.model else _default_model(pathlib.Path(args.run_dir))
        seconds["train"] = time.perf_counter() - tick
        card = files.read_json(model_path / "model_card.json")
        features = feature_config_from_dict(card["features"])
        trained_on = training_data(card)
        if trained_on.get("seed") == args.seed:
            raise ValueError(f"the model was trained on songs of seed {args.seed}; pick another --seed")
        reference_note = "training" if paths[0].name in trained_on.get("soundfonts", [paths[0].name]) else "reference"
        if reference_note != "training":
            print(f"note: the model was trained on {trained_on['soundfonts']}, not on the reference "
                  f"{paths[0].name}", file=sys.stderr)

        tick = time.perf_counter()
        for font in fonts:
            print(f"rendering and preparing {args.songs} songs with {font.path.name} -> {font.records}",
                  file=sys.stderr, flush=True)
            render_and_prepare(font, args, features, progress=not args.no_progress)
        seconds["render_and_prepare"] = time.perf_counter() - tick

        tick = time.perf_counter()
        same = check_same_songs(fonts, args.songs, features)
        seconds["label_check"] = time.perf_counter() - tick
        print(f"labels identical across {len(fonts)} fonts: {same['songs']} songs, {same['frames']} frames",
              file=sys.stderr)

        out = pathlib.Path(args.out) if args.out else model_path.parent / "generalisation"
        tick = time.perf_counter()
        rows = []
        for font in fonts:
            results = inference.evaluate_model_on_records(model_path, font.records, "test",
                                                         progress=not args.no_progress)
            json_path, _ = scoring.write_results(results, out / font.key)
            rows.append({
                "soundfont": font.path.name, "key": font.key, "path": str(font.path), "records": str(font.records),
                "songs": results["num_songs"], "hours": results["total_duration"] / 3600,
                "overall": results["overall"],
                "song_majmin": {k: v["majmin"] for k, v in results["songs"].items()},
                "error_categories": results["confusions"]["categories"],
                "spectrum": same["spectrum"][font.key], "evaluation": str(json_path),
            })
        seconds["evaluate"] = time.perf_counter() - tick
    except ValueError as e:
        print(f"generalisation: error: {e}", file=sys.stderr)
        return 2

    reference = rows[0]
    for row in rows[1:]:
        row["majmin_drop_points"] = 100 * (reference["overall"]["majmin"] - row["overall"]["majmin"])
        drops = [100 * (reference["song_majmin"][k] - v) for k, v in row["song_majmin"].items()
                 if v is not None and reference["song_majmin"].get(k) is not None]
        row["song_majmin_drop_points"] = {"median": float(np.median(drops)), "max": float(np.max(drops)),
                                          "songs_over_10": int(np.sum(np.array(drops) > 10))}
    seconds["total"] = time.perf_counter() - started
    summary = {
        "command": ["python", "benchmarks/generalisation.py", *(sys.argv[1:] if argv is None else argv)],
        "model": str(model_path), "trained_on": trained_on,
        "held_out": {"songs": args.songs, "seed": args.seed, "minutes_per_song": args.minutes_per_song},
        "labels_identical": True, "frames": same["frames"], "fonts": rows, "seconds": seconds,
        "load_average": os.getloadavg()[0],
    }
    print(format_table(rows, reference_note))
    print(f"(WCSR in percent; majmin drop = the {reference_note} font's majmin minus this font's, in points)")
    for row in rows[1:]:
        d = row["song_majmin_drop_points"]
        print(f"{row['soundfont']}: per-song majmin drop median {d['median']:+.2f}, max {d['max']:+.2f} points, "
              f"{d['songs_over_10']} of {row['songs']} songs lose more than 10")
    out.mkdir(parents=True, exist_ok=True)
    files.write_text_atomic(out / "generalisation.json", json.dumps(summary, indent=2, default=float) + "\n")
    print(f"\n{seconds['total']:.0f} s (render+prepare {seconds['render_and_prepare']:.0f} s, evaluate "
          f"{seconds['evaluate']:.0f} s); wrote {out / 'generalisation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
