"""`python -m chordkeras.dataservice`: tf.data service servers that feed `fit --data-service`.

When the training host's CPUs cannot parse, crop and pitch-shift excerpts as fast as its
accelerator trains on them, the training pipeline can run on other machines: one dispatcher and
any number of workers. `fit --data-service grpc://HOST:PORT` sends the pipeline (everything up to
and including batching) to the dispatcher; the workers run it and stream finished batches back.

Examples:
    python -m chordkeras.dataservice dispatcher --port 5050 --work-dir /shared/dispatcher
    python -m chordkeras.dataservice worker --dispatcher HOST:5050 --port 5051
    python -m chordkeras.fit --data /shared/tfrecords/big --data-service grpc://HOST:5050

Workers read the shards themselves, under the path the training host uses: put the dataset on a
shared file system (NFS, GCS) at the same path everywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import signal
import sys

import tensorflow as tf

# Songs, not whole passes, are split among the workers: the dispatcher hands out shard files and
# each worker parses, crops, augments and batches the songs of the shards it is given, so no song
# is processed twice in one pass however many workers run. ('parallel_epochs' would have every
# worker run the whole pipeline, whose shuffles and excerpt seeds are fixed by train.seed, so the
# workers would send largely the same excerpts.)
PROCESSING_MODE = "distributed_epoch"


def distribute(train: tf.data.Dataset, service: str, job_name: str) -> tf.data.Dataset:
    """Runs a batched training pipeline on the tf.data service; returns the stream the trainer reads.

    The pipeline repeats without end (a fit then counts `steps_per_epoch`), so the dispatcher keeps
    handing out shards, pass after pass. Every trainer of one multi-worker run reads the same
    `job_name`; each batch goes to one of them.

    Args:
        train: The training pipeline, batched (`chordkeras.dataset.train_dataset`), without a cache:
            a worker's cache would replay the shards of its first pass and never ask for others.
        service: The dispatcher, `grpc://host:port`.
        job_name: Shared by all trainers of one run, distinct between runs.
    """
    ds = train.repeat().apply(tf.data.experimental.service.distribute(
        processing_mode=PROCESSING_MODE, service=service, job_name=job_name))
    options = tf.data.Options()
    # Each batch already reaches one trainer only; sharding again would drop batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def job_name(run_name: str, config_json: str) -> str:
    """A tf.data service job name for a run: the same on all its trainers, different between runs."""
    return f"chordkeras-{run_name}-{hashlib.sha1(config_json.encode()).hexdigest()[:10]}"


def start_dispatcher(port: int, work_dir: str | None = None) -> tf.data.experimental.service.DispatchServer:
    """Starts a dispatcher on `port`; with `work_dir` it journals its state there and survives a restart."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=work_dir is not None)
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int, host: str,
                 heartbeat_ms: int | None = None) -> tf.data.experimental.service.WorkerServer:
    """Starts a worker on `port` that registers with `dispatcher` (host:port) as `host:port`.

    A worker learns of new jobs when it heartbeats, every `heartbeat_ms` (TensorFlow's default
    when None): a shorter interval gets every worker producing sooner after a fit starts.
    """
    address = f"{host}:{port}"
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher.removeprefix("grpc://"), worker_address=address, port=port,
        heartbeat_interval_ms=heartbeat_ms, data_transfer_address=address)
    return tf.data.experimental.service.WorkerServer(config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chordkeras.dataservice", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    servers = parser.add_subparsers(dest="server", required=True)
    dispatcher = servers.add_parser("dispatcher", help="the one server trainers and workers connect to")
    dispatcher.add_argument("--port", type=int, required=True)
    dispatcher.add_argument("--work-dir", help="journal folder: a restarted dispatcher resumes its jobs from it")
    worker = servers.add_parser("worker", help="runs training pipelines; start as many as needed")
    worker.add_argument("--dispatcher", required=True, metavar="HOST:PORT")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--host", default=socket.gethostname(),
                        help="name or address trainers reach this worker at (default: this host's name)")
    worker.add_argument("--heartbeat-ms", type=int,
                        help="how often to ask the dispatcher for new jobs (default: TensorFlow's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # The servers' join() cannot be interrupted by a Python signal handler, so the signals are
    # blocked (in the server threads too, which inherit the mask) and awaited here instead.
    awaitable = hasattr(signal, "pthread_sigmask")
    if awaitable:
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    if args.server == "dispatcher":
        server = start_dispatcher(args.port, args.work_dir)
        print(f"chordkeras.dataservice: dispatcher at grpc://{socket.gethostname()}:{args.port}"
              + (f", journal in {args.work_dir}" if args.work_dir else ""), flush=True)
    else:
        server = start_worker(args.dispatcher, args.port, args.host, args.heartbeat_ms)
        print(f"chordkeras.dataservice: worker {args.host}:{args.port} serving dispatcher {args.dispatcher}",
              flush=True)
    if not awaitable:  # Windows: no signal masks; the process ends with the console
        server.join()
        return 0
    received = signal.sigwait(stop_signals)
    server.stop()
    print(f"chordkeras.dataservice: {signal.Signals(received).name}: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
