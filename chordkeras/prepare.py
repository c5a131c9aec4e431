"""`python -m chordkeras.prepare`: audio + chord annotations -> sharded TFRecords under tfrecords/<name>/.

Examples:
    python -m chordkeras.prepare songs/ --name mysongs
    python -m chordkeras.prepare manifest.csv --name mysongs --workers 8
    python -m chordkeras.prepare songs/ --name big --shard 0 --num-shards 4   # one of 4 jobs
    python -m chordkeras.prepare --merge tfrecords/big                         # after all jobs
    python -m chordkeras.prepare --verify tfrecords/big                        # check, change nothing
    python -m chordkeras.prepare --mirdata beatles --data-home ~/mir_datasets/beatles --name beatles
    python -m chordkeras.prepare songs/ --mirdata billboard --mirdata guitarset --name mixed
    python -m chordkeras.prepare --list-mirdata
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from chordkeras import annotations, cli, mirdata_source, preparation
from chordkeras import config as config_lib


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chordkeras.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", metavar="source",
                        help="folder of audio with same-stem .lab/.jams files, or a CSV manifest (several: one dataset)")
    parser.add_argument("--mirdata", action="append", default=[], metavar="NAME",
                        help="a collection mirdata knows (repeatable; see --list-mirdata)")
    parser.add_argument("--data-home", action="append", default=[], metavar="DIR",
                        help="the collection's folder, once per --mirdata in the same order (default: ~/mir_datasets/NAME)")
    parser.add_argument("--version", dest="versions", action="append", default=[], metavar="V",
                        help="collection version, once per --mirdata (default: mirdata's default)")
    parser.add_argument("--index", dest="indexes", action="append", default=[], metavar="FILE",
                        help="mirdata index file, once per --mirdata (default: DATA_HOME/<index name>, then mirdata's)")
    parser.add_argument("--no-audio-checksum", action="store_true",
                        help="accept audio whose md5 differs from mirdata's index (your own rips)")
    parser.add_argument("--list-mirdata", action="store_true", help="list the collections with chords mirdata knows")
    parser.add_argument("--name", help="dataset name: output goes to <root>/<name> (default: the source's name)")
    parser.add_argument("--root", default="tfrecords", help="folder holding prepared datasets (default: tfrecords)")
    parser.add_argument("--out", help="exact output folder (instead of --root/--name)")
    parser.add_argument("--split", default="0.8,0.1,0.1",
                        help="train,valid,test shares (default: 0.8,0.1,0.1), or 'official': the sources' own split")
    parser.add_argument("--split-by", choices=preparation.SPLIT_UNITS, default="song",
                        help="what a split keeps together: each song on its own (default), or the songs of one "
                             "folder (an album), so that no album is on both sides of a split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default: 0)")
    parser.add_argument("--end-tolerance", type=float, default=annotations.END_TOLERANCE_SECONDS, metavar="SECONDS",
                        help="how far an annotation's chords may run past the end of the audio and be cut there "
                             f"(default: {annotations.END_TOLERANCE_SECONDS:g}); N past the end is always cut, "
                             "times before 0 are clipped; songs further off are skipped")
    parser.add_argument("--songs-per-shard", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU core)")
    parser.add_argument("--shard", type=int, default=0, help="this job's index when preparing in several jobs")
    parser.add_argument("--num-shards", type=int, default=1, help="number of parallel jobs")
    parser.add_argument("--merge", metavar="DIR", help="write DIR/dataset.json from the shards of all jobs")
    parser.add_argument("--verify", metavar="DIR",
                        help="check every shard of DIR (record checksums, counts) without changing anything; "
                             "exit status 1 when something is damaged or missing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="features.KEY=VALUE",
                        help="feature config override, e.g. --set features.hop_length=1024")
    parser.add_argument("--no-progress", action="store_true")
    cli.add_debug_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return cli.run("chordkeras.prepare", cli.debug_requested(args), lambda: _main(parser, args, argv))


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.list_mirdata:
        return _list_mirdata()
    if args.verify:
        return _verify(pathlib.Path(args.verify))
    if args.merge:
        info = preparation.merge_dataset(args.merge)
        _report(pathlib.Path(args.merge), info)
        return 0
    if not args.sources and not args.mirdata:
        parser.error("give a source folder or manifest, or --mirdata NAME (or --merge DIR)")
    for option, values in (("--data-home", args.data_home), ("--version", args.versions), ("--index", args.indexes)):
        if values and len(values) != len(args.mirdata):
            parser.error(f"{option} given {len(values)} time(s) for {len(args.mirdata)} --mirdata: once per --mirdata, "
                         "in the same order, or not at all")
    bad = [o for o in args.overrides if not o.startswith("features.")]
    if bad:
        parser.error(f"only features.* can be set when preparing: {bad}")
    features = config_lib.apply_overrides(config_lib.RunConfig(), args.overrides).features
    sources = [pathlib.Path(s) for s in args.sources] + [
        mirdata_source.MirdataSource(
            name, data_home=args.data_home[i] if args.data_home else None,
            version=args.versions[i] if args.versions else "default",
            index=args.indexes[i] if args.indexes else None, audio_checksums=not args.no_audio_checksum,
        )
        for i, name in enumerate(args.mirdata)
    ]
    default_name = sources[0].stem if isinstance(sources[0], pathlib.Path) else sources[0].name
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.root) / (args.name or default_name)
    official = args.split == "official"
    try:
        fractions = (0.8, 0.1, 0.1) if official else tuple(float(x) for x in args.split.split(","))
    except ValueError:
        parser.error(f"--split {args.split!r}: give three shares like 0.8,0.1,0.1, or 'official'")
    config = preparation.PrepareConfig(
        split_fractions=fractions, seed=args.seed, songs_per_shard=args.songs_per_shard,
        workers=args.workers, job_index=args.shard, num_jobs=args.num_shards, official_split=official,
        split_by=args.split_by, end_tolerance=args.end_tolerance,
    )
    # Errors (MirdataError included) are ValueErrors: cli.run reports them in one line.
    info = preparation.prepare_dataset(
        sources, out, features, config, command=sys.argv if argv is None else ["chordkeras.prepare", *argv],
        progress=not args.no_progress,
    )
    if info is None:
        print(f"job {args.shard} of {args.num_shards} done; after all jobs: python -m chordkeras.prepare --merge {out}")
        return 0
    _report(out, info)
    return 0


def _verify(folder: pathlib.Path) -> int:
    checked, problems = preparation.verify_dataset(folder)
    for problem in problems:
        print(f"chordkeras.prepare: {problem}", file=sys.stderr)
    if problems:
        print(f"chordkeras.prepare: {folder}: {len(problems)} problem(s) in {checked} shard(s); to repair, "
              f"{preparation.repair_hint(folder)}", file=sys.stderr)
        return 1
    print(f"{folder}: {checked} shard(s) verified, every record intact")
    return 0


def _list_mirdata() -> int:
    collections, failed = mirdata_source.chord_collections()
    print("collections with chord annotations in mirdata (versions: default first):")
    for c in collections:
        if not c.has_audio:
            reads = "no audio: cannot be prepared"
        elif c.dialect is not None:
            reads = f"{c.dialect.chords} + {c.dialect.audio_key}: {c.dialect.note}"
        else:
            reads = f"chords: {', '.join(c.chord_attributes)}"
        print(f"  {c.name:<12} {', '.join(c.versions) or '-':<10} {reads}")
    if failed:
        print(f"not inspected (their loaders need packages of their own): {', '.join(sorted(failed))}")
    return 0


def _report(out: pathlib.Path, info: dict) -> None:
    splits = ", ".join(f"{s}: {v['songs']} songs / {v['hours']:.2f} h" for s, v in info["splits"].items())
    print(f"prepared {out}: {splits}")
    for source in info.get("sources", []):
        kinds = ", ".join(f"{kind} {n}" for kind, n in source["skipped"].items())
        skipped = sum(source["skipped"].values())
        trimmed = f" ({source['trimmed']} of them trimmed)" if source.get("trimmed") else ""
        print(f"  {source['label']}: {source['found']} found, {source['prepared']} prepared{trimmed}, {skipped} skipped"
              + (f" ({kinds})" if kinds else ""))
    if info.get("trimmed"):
        print(f"trimmed {len(info['trimmed'])} annotation(s) to fit their audio:")
        for item in info["trimmed"]:
            print(f"  {item['annotation']}: {'; '.join(item['changes'])}")
    if info["skipped"]:
        print(f"skipped {len(info['skipped'])} input(s):")
        for item in info["skipped"]:
            print(f"  {item['reason']}")
    print(f"details: {out / 'dataset.json'}")


if __name__ == "__main__":
    sys.exit(main())
