"""Scaling out on 127.0.0.1: multi-worker training, the tf.data service data pump, sharded preparation.

Servers and workers run in subprocesses, each bounded by a timeout and killed when a test ends.
"""

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from chordkeras import config as config_lib
from chordkeras import dataservice, prepare, records, train

from helpers_data import write_tiny_dataset

pytestmark = pytest.mark.slow  # worker processes and multi-replica fits

TIMEOUT = 300  # seconds for a group of subprocesses on a busy 2-core machine
OVERRIDES = ["data.excerpt_seconds=2.0", "data.batch_size=8", "data.epoch_coverage=2", "train.epochs=1",
             "train.learning_rate=0.01", "train.mixed_precision=off"]


def _config():
    return config_lib.resolve("tiny", OVERRIDES)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def _subprocesses():
    """A list to start processes into; whatever is still running at the end is killed."""
    running = []
    try:
        yield running
    finally:
        for proc, _ in running:
            if proc.poll() is None:
                proc.kill()
        for proc, log in running:
            proc.wait(timeout=30)
            log.close()


def _start(running, args, log_path, cwd=None, env=None):
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    running.append((proc, log))
    return proc


def _wait_for_line(proc, log_path, text, deadline):
    while time.monotonic() < deadline:
        if text in log_path.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"{log_path.name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {text!r} in {log_path.name}:\n{log_path.read_text()[-3000:]}")


# --------------------------------------------------------------------------------------------
# Multi-worker training

WORKER_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np, tensorflow as tf
    from chordkeras import config as config_lib, train

    data_dir, run_dir, out = sys.argv[1:4]
    overrides, stop_at = json.loads(sys.argv[4]), int(sys.argv[5])

    class Dump(keras.callbacks.Callback):
        # Epochs run, frames trained on in the last one (all replicas together), final weights.

        def __init__(self):
            super().__init__()
            self.epochs, self.frames = [], None

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == stop_at:  # every worker stops here, as when the job is preempted
                raise KeyboardInterrupt
            self.epochs.append(epoch)
            self.frames = None

        def on_test_begin(self, logs=None):
            # Read before validation resets the metrics; the read sums the replicas' counts.
            if self.frames is None:
                self.frames = float(tf.convert_to_tensor(self.model.frame_metrics["loss"].denominator.value))

        def on_train_end(self, logs=None):
            weights = {f"{i}:{w.path}": np.asarray(w.value) for i, w in enumerate(self.model.weights)}
            np.savez(out, epochs=self.epochs, frames=self.frames, loss=self.model.history.history["loss"],
                     **weights)

    try:
        train.train(config_lib.resolve("tiny", overrides), data_dir, run_dir, strategy="multi-worker",
                    export=False, verbose=0, callbacks=[Dump()])
    except KeyboardInterrupt:
        print(f"stopped at epoch {stop_at}", flush=True)
        sys.exit(3)
""")


def _two_workers(tmp_path, args, overrides, stop_at, tag):
    """Runs worker 0 (the chief) and worker 1 of a new TF_CONFIG cluster; returns (exit code, log) of each."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    logs = [tmp_path / f"worker{i}-{tag}.log" for i in range(2)]
    with _subprocesses() as running:
        procs = [
            _start(running, [str(script), *args, str(tmp_path / f"worker{i}.npz"), json.dumps(overrides), str(stop_at)],
                   logs[i], env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
            for i in range(2)
        ]
        deadline = time.monotonic() + TIMEOUT
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return [(proc.returncode, log.read_text()) for proc, log in zip(procs, logs)]


def test_two_workers_train_one_model_resume_together_and_only_the_chief_writes_it(tmp_path):
    data_dir = write_tiny_dataset(tmp_path / "tiny", _config().features, songs_per_split=(8, 2, 2))
    run_dir = tmp_path / "run"
    args, overrides = [str(data_dir), str(run_dir)], [*OVERRIDES, "train.epochs=2"]
    # Both workers stop as epoch 2 begins; each keeps a backup of epoch 1 in its own folder.
    for code, log in _two_workers(tmp_path, args, overrides, stop_at=1, tag="first"):
        assert code == 3, log[-3000:]
    assert (run_dir / "backup" / "epoch-00001.weights.h5").exists()
    assert (run_dir / ".worker-1" / "backup" / "epoch-00001.weights.h5").exists()
    # Restarted with the same command (on new ports), both restore epoch 1 and train epoch 2 together.
    (code0, log0), (code1, log1) = _two_workers(tmp_path, args, overrides, stop_at=-1, tag="again")
    assert code0 == 0, log0[-3000:]
    assert code1 == 0, log1[-3000:]

    # Worker 0 is the chief: it alone evaluates on the test split, exports and writes the logs.
    assert "test split" in log0 and "test split" not in log1
    assert {"config.json", "command.txt", "history.csv", "test_metrics.json", "checkpoints", "logs", "export",
            ".worker-1"} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "export" / "model.keras").exists()
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 1 + 2
    # The other worker kept only its own checkpoint; backups are removed once the run finished.
    assert sorted(str(p.relative_to(run_dir)) for p in (run_dir / ".worker-1").rglob("*")) == [
        ".worker-1/checkpoints", ".worker-1/checkpoints/best.weights.h5"]
    assert not (run_dir / "backup").exists()

    chief, other = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    assert list(chief["epochs"]) == list(other["epochs"]) == [1]
    # One global batch of 8 excerpts per step, split 4 + 4: in the epoch the replicas trained on
    # steps * 8 excerpts of excerpt_frames real frames together, not twice that.
    config = _config()
    steps = 8 * 40 * config.data.epoch_coverage // config.data.excerpt_frames(config.features) // config.data.batch_size
    assert chief["frames"] == other["frames"] == steps * 8 * config.data.excerpt_frames(config.features)
    np.testing.assert_array_equal(chief["loss"], other["loss"])
    weight_names = [k for k in chief.files if ":" in k]
    assert weight_names == [k for k in other.files if ":" in k]
    assert any("moving_mean" in k for k in weight_names)
    for name in weight_names:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)


MIRRORED_SCRIPT = textwrap.dedent('''
    import numpy as np, keras, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from chordkeras.model import ChordModel

    rng = np.random.default_rng(0)
    B, T, F = 4, 6, 5
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    y = {"chord": rng.integers(-1, 7, (B, T)).astype(np.int32),
         "root": rng.integers(0, 13, (B, T)).astype(np.int32),
         "bass": rng.integers(0, 13, (B, T)).astype(np.int32),
         "pitches": (rng.random((B, T, 12)) > 0.5).astype(np.float32)}
    # Replica 0 gets the first two excerpts (12 real frames), replica 1 the last two (2 real frames).
    mask = np.zeros((B, T), np.float32)
    mask[:2] = 1.0
    mask[2:, 0] = 1.0
    data = tf.data.Dataset.from_tensors((x, y, mask))

    def build():
        inputs = keras.Input((None, F))
        outputs = {name: keras.layers.Dense(n, name=name)(inputs)
                   for name, n in (("chord", 7), ("root", 13), ("bass", 13), ("pitches", 12))}
        model = ChordModel(inputs=inputs, outputs=outputs, label_smoothing=0.1)
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        return model

    keras.utils.set_random_seed(0)
    single = build()
    start = single.get_weights()
    single.fit(data, epochs=1, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    batches = strategy.experimental_local_results(next(iter(strategy.experimental_distribute_dataset(data)))[0])
    assert [b.shape[0] for b in batches] == [2, 2], [b.shape for b in batches]
    with strategy.scope():
        mirrored = build()
    mirrored.set_weights(start)
    mirrored.fit(data, epochs=1, verbose=0)
    moved = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), start))
    assert moved > 1e-2, moved
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("same step on 1 and 2 replicas")
''')


def test_replicas_with_unequal_real_frames_take_the_single_device_step(tmp_path):
    # The loss is summed over frames and divided by the global frame count, so gradients summed
    # over replicas equal the one-device gradient even when the replicas hold 12 and 2 real frames
    # (averaging per-replica means would weight those 2 frames six times too much).
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "same step on 1 and 2 replicas" in result.stdout


# --------------------------------------------------------------------------------------------
# tf.data service


def test_two_data_service_workers_feed_a_fit(tmp_path, monkeypatch):
    # 32 one-song shards, and small shuffle buffers so that a worker's pipeline takes shards only
    # as its batches are consumed (as with a real corpus, whose passes are far longer than the
    # buffers): the dispatcher then deals the shards of a pass to both workers.
    data_dir = write_tiny_dataset(tmp_path / "tiny", _config().features, songs_per_split=(32, 2, 2),
                                  songs_per_shard=1)
    # A worker's first batch can come seconds after the other's: epochs of 24 steps (three passes)
    # go on until batches from both have arrived (at most 8 epochs).
    config = config_lib.resolve("tiny", [*OVERRIDES, "data.epoch_coverage=1", "data.shuffle_songs=2",
                                         "data.shuffle_excerpts=8", "data.steps_per_epoch=24", "train.epochs=8"])
    dispatcher_port, *worker_ports = _free_ports(3)
    logs = {name: tmp_path / f"{name}.log" for name in ("dispatcher", "a", "b")}

    # Each worker runs in its own folder holding a file with its name: the pipeline reads
    # "worker-name" relative to the working directory, so an element names the worker that made
    # it (and the read would fail in the trainer, whose folder has no such file).
    sent, consumed = [], []
    real_distribute = tf.data.experimental.service.distribute

    def tagging_distribute(**kwargs):
        apply = real_distribute(**kwargs)

        def transformation(ds):
            sent.append(ds)
            tagged = ds.map(lambda x, y, mask: (x, y, mask, tf.io.read_file("worker-name")))
            return apply(tagged).map(record)

        return transformation

    def record(x, y, mask, name):
        def log(name, x):
            consumed.append((name.numpy().decode(), x.shape, [hash(e.tobytes()) for e in x.numpy()]))
            return 0

        with tf.control_dependencies([tf.py_function(log, [name, x], tf.int32)]):
            return tf.identity(x), y, mask

    monkeypatch.setattr(tf.data.experimental.service, "distribute", tagging_distribute)
    with _subprocesses() as running:
        deadline = time.monotonic() + TIMEOUT
        dispatcher = _start(running, ["-m", "chordkeras.dataservice", "dispatcher", "--port", str(dispatcher_port)],
                            logs["dispatcher"])
        _wait_for_line(dispatcher, logs["dispatcher"], "dispatcher at", deadline)
        workers = []
        for name, port in zip("ab", worker_ports):
            (tmp_path / name).mkdir()
            (tmp_path / name / "worker-name").write_text(name)
            workers.append(_start(running, ["-m", "chordkeras.dataservice", "worker", "--dispatcher",
                                            f"127.0.0.1:{dispatcher_port}", "--port", str(port), "--host", "127.0.0.1",
                                            "--heartbeat-ms", "200"],
                                  logs[name], cwd=tmp_path / name))
        for proc, name in zip(workers, "ab"):
            _wait_for_line(proc, logs[name], "serving dispatcher", deadline)

        class UntilBothWorkersSent(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.model.stop_training = {name for name, _, _ in consumed} == {"a", "b"}

        result = train.train(config, data_dir, tmp_path / "run", data_service=f"grpc://127.0.0.1:{dispatcher_port}",
                             export=False, verbose=0, callbacks=[UntilBothWorkersSent()])
        assert len(result.history["loss"]) >= 1

        # SIGTERM stops each server cleanly.
        for proc in [dispatcher, *workers]:
            proc.terminate()
        for proc, log in zip([dispatcher, *workers], logs.values()):
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
            assert "SIGTERM: stopped" in log.read_text()

    # The pipeline sent to the service parses, crops, pitch-shifts and batches (its graph, with
    # the functions of its maps, holds those ops).
    graph = tf.compat.v1.GraphDef.FromString(sent[0]._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    assert {"TFRecordDataset", "ParseExampleV2", "StatelessRandomUniformV2", "Roll", "BatchDatasetV2"} <= ops, ops
    assert "CacheDatasetV2" not in ops
    # Batches from both workers reached the fit, already batched and cropped there, and no
    # excerpt came twice: the workers split the songs instead of each sending all of them.
    assert {name for name, _, _ in consumed} == {"a", "b"}
    assert {shape for _, shape, _ in consumed} == {
        (config.data.batch_size, config.data.excerpt_frames(config.features), config.features.n_bins)}
    excerpts = [h for _, _, hashes in consumed for h in hashes]
    assert len(excerpts) >= 24 * config.data.batch_size
    assert len(set(excerpts)) == len(excerpts)


def test_job_names_are_shared_by_a_run_and_differ_between_runs():
    config = _config()
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=0.1))
    assert dataservice.job_name("run", config.to_json()) == dataservice.job_name("run", config.to_json())
    assert dataservice.job_name("run", config.to_json()) != dataservice.job_name("run", other.to_json())


# --------------------------------------------------------------------------------------------
# Sharded preparation


def test_two_prepare_jobs_plus_merge_equal_one_run_from_the_command_line(tmp_path):
    sr = 22050
    src = tmp_path / "songs"
    src.mkdir()
    t = np.arange(2 * sr) / sr
    for i in range(4):
        # One chord per song: the root moves by i semitones from C4.
        freqs = 261.63 * 2 ** ((np.array([0, 4, 7]) + i) / 12)
        sf.write(src / f"song{i}.wav", (0.2 * np.sin(2 * np.pi * freqs[:, None] * t)).sum(0).astype(np.float32), sr)
        (src / f"song{i}.lab").write_text(f"0.0 2.0 {['C', 'C#', 'D', 'D#'][i]}:maj\n")
    common = [str(src), "--songs-per-shard", "1", "--workers", "1", "--no-progress"]
    assert prepare.main([*common, "--out", str(tmp_path / "single")]) == 0
    for job in range(2):
        job_args = ["--out", str(tmp_path / "sharded"), "--shard", str(job), "--num-shards", "2"]
        assert prepare.main([*common, *job_args]) == 0
    assert not (tmp_path / "sharded" / records.DATASET_INFO).exists()
    assert prepare.main(["--merge", str(tmp_path / "sharded")]) == 0

    single, sharded = (records.read_dataset_info(tmp_path / d) for d in ("single", "sharded"))
    for key in ("splits", "label_histogram", "skipped", "total_hours"):
        assert sharded[key] == single[key], key
    shards = sorted(p.name for p in (tmp_path / "single").glob("*.tfrecord"))
    assert len(shards) == 4
    assert shards == sorted(p.name for p in (tmp_path / "sharded").glob("*.tfrecord"))
    for shard in shards:
        assert (tmp_path / "single" / shard).read_bytes() == (tmp_path / "sharded" / shard).read_bytes(), shard
