"""`python -m chordkeras.prepare`: audio + chord annotations -> sharded TFRecords under tfrecords/<name>/.

Examples:
    python -m chordkeras.prepare songs/ --name mysongs
    python -m chordkeras.prepare manifest.csv --name mysongs --workers 8
    python -m chordkeras.prepare songs/ --name big --shard 0 --num-shards 4   # one of 4 jobs
    python -m chordkeras.prepare --merge tfrecords/big                         # after all jobs
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from chordkeras import config as config_lib
from chordkeras import preparation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chordkeras.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="folder of audio with same-stem .lab/.jams files, or a CSV manifest")
    parser.add_argument("--name", help="dataset name: output goes to <root>/<name> (default: the source's name)")
    parser.add_argument("--root", default="tfrecords", help="folder holding prepared datasets (default: tfrecords)")
    parser.add_argument("--out", help="exact output folder (instead of --root/--name)")
    parser.add_argument("--split", default="0.8,0.1,0.1", help="train,valid,test shares (default: 0.8,0.1,0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default: 0)")
    parser.add_argument("--songs-per-shard", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU core)")
    parser.add_argument("--shard", type=int, default=0, help="this job's index when preparing in several jobs")
    parser.add_argument("--num-shards", type=int, default=1, help="number of parallel jobs")
    parser.add_argument("--merge", metavar="DIR", help="write DIR/dataset.json from the shards of all jobs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="features.KEY=VALUE",
                        help="feature config override, e.g. --set features.hop_length=1024")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.merge:
        info = preparation.merge_dataset(args.merge)
        _report(pathlib.Path(args.merge), info)
        return 0
    if not args.source:
        parser.error("give a source folder or manifest (or --merge DIR)")
    bad = [o for o in args.overrides if not o.startswith("features.")]
    if bad:
        parser.error(f"only features.* can be set when preparing: {bad}")
    features = config_lib.apply_overrides(config_lib.RunConfig(), args.overrides).features
    source = pathlib.Path(args.source)
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.root) / (args.name or source.stem)
    try:
        fractions = tuple(float(x) for x in args.split.split(","))
        config = preparation.PrepareConfig(
            split_fractions=fractions, seed=args.seed, songs_per_shard=args.songs_per_shard,
            workers=args.workers, job_index=args.shard, num_jobs=args.num_shards,
        )
        info = preparation.prepare_dataset(
            source, out, features, config, command=sys.argv if argv is None else ["chordkeras.prepare", *argv],
            progress=not args.no_progress,
        )
    except ValueError as e:
        print(f"chordkeras.prepare: error: {e}", file=sys.stderr)
        return 2
    if info is None:
        print(f"job {args.shard} of {args.num_shards} done; after all jobs: python -m chordkeras.prepare --merge {out}")
        return 0
    _report(out, info)
    return 0


def _report(out: pathlib.Path, info: dict) -> None:
    splits = ", ".join(f"{s}: {v['songs']} songs / {v['hours']:.2f} h" for s, v in info["splits"].items())
    print(f"prepared {out}: {splits}")
    if info["skipped"]:
        print(f"skipped {len(info['skipped'])} input(s):")
        for item in info["skipped"]:
            print(f"  {item['reason']}")
    print(f"details: {out / 'dataset.json'}")


if __name__ == "__main__":
    sys.exit(main())
