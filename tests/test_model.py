"""chordkeras.model: shapes, save/load, masking, the loss and metrics by hand, distribution."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from chordkeras import model as model_lib
from chordkeras import vocab
from chordkeras.config import resolve

# Two octaves of bins keep every model here tiny; the default is checked once for its size.
SMALL = ["features.n_octaves=2", "model.transformer_dim=16", "model.transformer_heads=2", "model.transformer_layers=1"]


def small_config(architecture="crnn", vocabulary="majmin", *overrides):
    return resolve("tiny", SMALL + [f"model.architecture={architecture}", f"data.vocabulary={vocabulary}",
                                    *overrides])


def random_batch(config, batch=2, frames=12, seed=0):
    """Random spectrogram, targets and an all-ones mask of the config's vocabulary."""
    rng = np.random.default_rng(seed)
    classes = model_lib.num_classes(config.data.vocabulary)
    x = rng.random((batch, frames, config.features.n_bins), dtype=np.float32) + 0.1
    y = {
        "chord": rng.integers(-1, classes, (batch, frames)).astype(np.int32),
        "root": rng.integers(0, 13, (batch, frames)).astype(np.int32),
        "bass": rng.integers(0, 13, (batch, frames)).astype(np.int32),
        "pitches": rng.integers(0, 2, (batch, frames, 12)).astype(np.float32),
    }
    return x, y, np.ones((batch, frames), np.float32)


def pad(x, y, mask, extra, seed=1):
    """Appends `extra` zero frames with mask 0 and arbitrary labels."""
    rng = np.random.default_rng(seed)
    b = x.shape[0]
    x = np.concatenate([x, np.zeros((b, extra, x.shape[2]), np.float32)], axis=1)
    y = {k: np.concatenate([v, rng.integers(0, 2, (b, extra) + v.shape[2:]).astype(v.dtype)], axis=1)
         for k, v in y.items()}
    return x, y, np.concatenate([mask, np.zeros((b, extra), np.float32)], axis=1)


def evaluate(model, x, y, mask):
    model.reset_metrics()
    return {k: float(v) for k, v in model.test_step((x, y, mask)).items()}


@pytest.mark.parametrize("architecture", model_lib.ARCHITECTURES)
@pytest.mark.parametrize("vocabulary", ["majmin", "large"])
def test_outputs_names_shapes_and_dtypes(architecture, vocabulary):
    config = small_config(architecture, vocabulary)
    model = model_lib.build_model(config)
    x, _, _ = random_batch(config, batch=3, frames=7)
    outputs = model(x)
    classes = {"majmin": 25, "large": 170}[vocabulary]
    assert list(outputs) == ["chord", "root", "bass", "pitches"]
    expected = {"chord": classes, "root": 13, "bass": 13, "pitches": 12}
    for name, size in expected.items():
        assert tuple(outputs[name].shape) == (3, 7, size)
        assert outputs[name].dtype == tf.float32
    assert model.input_shape == (None, None, config.features.n_bins)


def test_default_crnn_size():
    model = model_lib.build_model(resolve("default"))
    assert 100_000 <= model.count_params() <= 300_000


@pytest.mark.parametrize("downsampling,bins", [("stride", 10), ("max_pool", 9)])
def test_conv_block_downsampling_output_bins(downsampling, bins):
    # 48 bins (two octaves) divided by 5: a strided 'same' convolution keeps ceil(48 / 5) = 10 bins,
    # a max-pool floor(48 / 5) = 9.
    config = small_config("crnn", "majmin", "model.pool_frequency=5", f"model.downsampling={downsampling}")
    model = model_lib.build_model(config)
    block = model.get_layer("conv_0")
    assert block.output_bins(48) == bins
    x, _, _ = random_batch(config, batch=2, frames=6)
    features = keras.Model(model.input, block.output)(x)
    assert tuple(features.shape) == (2, 6, bins, config.model.conv_filters[0])
    assert keras.Model(model.input, model.get_layer("frames").output)(x).shape[-1] == bins * 8


def test_unknown_architecture_and_bad_class_weights_raise():
    with pytest.raises(ValueError, match="architecture"):
        model_lib.build_model(small_config("lstm"))
    with pytest.raises(ValueError, match="class_weights"):
        model_lib.build_model(small_config(), class_weights=np.ones(3))
    with pytest.raises(ValueError, match="downsampling"):
        model_lib.build_model(small_config("crnn", "majmin", "model.downsampling=avg_pool"))


@pytest.mark.parametrize("architecture", model_lib.ARCHITECTURES)
def test_keras_file_round_trip(tmp_path, architecture):
    config = small_config(architecture, "large", "train.label_smoothing=0.1")
    weights = np.linspace(0.5, 2.0, 170)
    model = model_lib.build_model(config, class_weights=weights)
    rng = np.random.default_rng(0)
    # Every weight away from its initial value, batch-norm statistics included.
    model.set_weights([w + rng.normal(0.0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    x, _, _ = random_batch(config)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, model_lib.ChordModel)
    for name, value in model(x).items():
        np.testing.assert_array_equal(loaded(x)[name].numpy(), value.numpy())
    assert loaded.label_smoothing == pytest.approx(0.1)
    np.testing.assert_allclose(loaded.class_weights, weights, rtol=1e-6)
    assert loaded.to_majmin == model.to_majmin


@pytest.mark.parametrize("architecture,downsampling", [("crnn", "stride"), ("crnn", "max_pool"),
                                                       ("transformer", "max_pool")])
def test_padding_changes_no_output_loss_or_metric(architecture, downsampling):
    config = small_config(architecture, "majmin", "model.dropout=0.0", f"model.downsampling={downsampling}")
    model = model_lib.build_model(config)
    model_lib.compile_model(model, config, steps_per_epoch=1)
    x, y, mask = random_batch(config, frames=10)
    x[1, 4:6] = 0.0  # silence inside a song is a real frame, not padding
    xp, yp, maskp = pad(x, y, mask, extra=5)
    for training in (False, True):  # training: batch-norm statistics skip the padding too
        short, long = model(x, training=training), model(xp, training=training)
        for name in short:
            np.testing.assert_allclose(long[name][:, :10].numpy(), short[name].numpy(), rtol=1e-5, atol=1e-5)
    plain, padded = evaluate(model, x, y, mask), evaluate(model, xp, yp, maskp)
    assert padded == pytest.approx(plain, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("padded", [False, True], ids=["fused", "masked"])
def test_batch_norm_training_statistics_by_hand(padded):
    # Channel 0 sees 1 and 3 (mean 2, biased variance 1), channel 1 sees 4 and 4 (variance 0).
    x = np.array([[[1.0, 4.0], [3.0, 4.0]]], np.float32)
    mask = np.ones((1, 2), np.float32)
    if padded:  # a trailing masked frame: the masked moments must give the same numbers
        x, mask = np.concatenate([x, np.full((1, 1, 2), 7.0, np.float32)], 1), np.array([[1.0, 1.0, 0.0]], np.float32)
    norm = model_lib.MaskedBatchNorm(momentum=0.99, epsilon=1e-3)
    out = norm(tf.constant(x), tf.constant(mask), training=True).numpy()
    expected = [[[-1 / np.sqrt(1.001), 0.0], [1 / np.sqrt(1.001), 0.0]] + ([[0.0, 0.0]] if padded else [])]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.moving_mean.numpy(), [0.02, 0.04], rtol=1e-5)
    # The biased variance (1, not the fused kernel's unbiased 2) enters the moving average.
    np.testing.assert_allclose(norm.moving_variance.numpy(), [0.99 + 0.01 * 1.0, 0.99], rtol=1e-6)


def test_batch_norm_fused_path_reads_bfloat16():
    x = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, (4, 9, 5, 3)), tf.float32)
    mask = tf.ones((4, 9))
    reference = model_lib.MaskedBatchNorm()(x, mask, training=True).numpy()
    norm = model_lib.MaskedBatchNorm(dtype="mixed_bfloat16")
    out = norm(tf.cast(x, tf.bfloat16), mask, training=True)
    assert out.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), reference, atol=0.03)


def test_frame_mask_marks_only_trailing_zero_frames():
    x = np.ones((3, 5, 4), np.float32)
    x[0, 3:] = 0.0  # padding
    x[1, 1:3] = 0.0  # inner silence
    x[2] = 0.0  # all silent: the first frame still counts
    mask = model_lib.FrameMask()(x).numpy()
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_loss_by_hand_with_ignored_frames_smoothing_and_class_weights():
    config = small_config("crnn", "majmin", "train.label_smoothing=0.2")
    class_weights = np.linspace(0.5, 1.5, 25).astype(np.float32)
    model = model_lib.build_model(config, class_weights=class_weights)
    rng = np.random.default_rng(3)
    outputs = {"chord": rng.normal(size=(1, 4, 25)), "root": rng.normal(size=(1, 4, 13)),
               "bass": rng.normal(size=(1, 4, 13)), "pitches": rng.normal(size=(1, 4, 12))}
    targets = {"chord": np.array([[3, -1, 24, 0]]), "root": np.array([[2, 5, 12, 12]]),
               "bass": np.array([[2, 9, 12, 1]]), "pitches": rng.integers(0, 2, (1, 4, 12)).astype(np.float64)}
    mask = np.array([[1.0, 1.0, 1.0, 0.0]])
    loss_sum, frames = model.frame_losses({k: tf.constant(v) for k, v in targets.items()},
                                          {k: tf.constant(v, tf.float32) for k, v in outputs.items()},
                                          tf.constant(mask, tf.float32))

    def smoothed_ce(logits, label, eps=0.2):
        lp = log_softmax(logits)
        return -((1 - eps) * lp[label] + eps * lp.mean())

    weights = dict(config.train.loss_weights)
    expected = 0.0
    for t in (0, 2):  # frame 1 has no chord class, frame 3 is padding
        c = targets["chord"][0, t]
        expected += weights["chord"] * class_weights[c] * smoothed_ce(outputs["chord"][0, t], c)
    for t in (0, 1, 2):
        expected += weights["root"] * smoothed_ce(outputs["root"][0, t], targets["root"][0, t])
        expected += weights["bass"] * smoothed_ce(outputs["bass"][0, t], targets["bass"][0, t])
        z, p = outputs["pitches"][0, t], targets["pitches"][0, t]
        expected += weights["pitches"] * np.mean(np.maximum(z, 0) - z * p + np.log1p(np.exp(-np.abs(z))))
    assert float(frames) == 3.0
    assert float(loss_sum) == pytest.approx(expected, rel=1e-5)


def one_hot_logits(indices, size):
    return tf.constant(np.eye(size, dtype=np.float32)[np.asarray(indices)][None] * 5.0)


def test_metrics_on_a_hand_made_batch():
    config = small_config("crnn", "large")
    model = model_lib.build_model(config)
    large = vocab.get_vocabulary("large")
    c = large.class_names.index
    # frame:     0 C:maj/C:maj   1 C:maj7/C:maj  2 D:min/D:maj  3 C:dim/C:dim  4 N/N  5 ignored  6 padding
    reference = [c("C:maj"), c("C:maj7"), c("D:min"), c("C:dim"), 0, -1, c("C:maj")]
    estimate = [c("C:maj"), c("C:maj"), c("D:maj"), c("C:dim"), 0, c("E:min"), 0]
    roots = [0, 0, 2, 0, 12, 5, 0]
    root_estimate = [0, 0, 4, 0, 12, 5, 3]
    pitches = np.zeros((1, 7, 12), np.float32)
    pitches[0, :, [0, 4, 7]] = 1.0
    pitch_logits = np.where(pitches > 0, 3.0, -3.0).astype(np.float32)
    pitch_logits[0, 0, 1] = 3.0  # one wrong pitch class on a real frame
    pitch_logits[0, 6] *= -1.0  # all wrong on the padding frame: not counted
    targets = {"chord": tf.constant([reference]), "root": tf.constant([roots]), "bass": tf.constant([roots]),
               "pitches": tf.constant(pitches)}
    outputs = {"chord": one_hot_logits(estimate, 170), "root": one_hot_logits(root_estimate, 13),
               "bass": one_hot_logits(roots, 13), "pitches": tf.constant(pitch_logits)}
    mask = tf.constant([[1, 1, 1, 1, 1, 1, 0]], tf.float32)
    loss_sum, frames = model.frame_losses(targets, outputs, mask)
    model.reset_metrics()
    result = {k: float(v) for k, v in model.update_frame_metrics(targets, outputs, mask, loss_sum, frames).items()}
    assert result["chord_accuracy"] == pytest.approx(3 / 5)  # frames 0, 3, 4 of 0..4
    assert result["majmin_accuracy"] == pytest.approx(3 / 4)  # frames 0, 1, 4 of 0, 1, 2, 4 (no dim)
    assert result["root_accuracy"] == pytest.approx(5 / 6)
    assert result["bass_accuracy"] == pytest.approx(1.0)
    assert result["pitches_accuracy"] == pytest.approx(71 / 72)
    assert result["loss"] == pytest.approx(float(loss_sum) / 6.0)


def test_majmin_table_reduces_tetrads_and_drops_the_rest():
    large = vocab.get_vocabulary("large")
    majmin = vocab.get_vocabulary("majmin")
    table = model_lib.majmin_table("large")
    assert table[large.class_names.index("N")] == 0
    assert table[large.class_names.index("X")] == -1
    assert table[large.class_names.index("D:7")] == majmin.class_names.index("D:maj")
    assert table[large.class_names.index("A:min7")] == majmin.class_names.index("A:min")
    assert table[large.class_names.index("B:sus4")] == -1
    np.testing.assert_array_equal(model_lib.majmin_table("majmin"), np.arange(25))


def learnable_problem(config, batch=8, frames=24, seed=0):
    """Each frame's chord (a major triad) is readable from three active bins."""
    rng = np.random.default_rng(seed)
    roots = rng.integers(0, 12, (batch, frames))
    x = rng.random((batch, frames, config.features.n_bins), dtype=np.float32) * 0.1
    per = config.features.bins_per_semitone
    b, t = np.meshgrid(np.arange(batch), np.arange(frames), indexing="ij")
    for interval in (0, 4, 7):
        x[b, t, ((roots + interval) % 12) * per] += 2.0
    pitches = np.zeros((batch, frames, 12), np.float32)
    for interval in (0, 4, 7):
        pitches[b, t, (roots + interval) % 12] = 1.0
    y = {"chord": (1 + roots).astype(np.int32), "root": roots.astype(np.int32), "bass": roots.astype(np.int32),
         "pitches": pitches}
    return x, y, np.ones((batch, frames), np.float32)


@pytest.mark.slow
def test_training_steps_reduce_the_loss():
    config = small_config("crnn", "majmin", "train.learning_rate=0.01")
    model = model_lib.build_model(config)
    model_lib.compile_model(model, config, steps_per_epoch=1)
    batch = learnable_problem(config)
    before = evaluate(model, *batch)["loss"]
    history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=25, epochs=1, verbose=0)
    after = evaluate(model, *batch)["loss"]
    assert np.isfinite(history.history["loss"][0])
    assert after < 0.7 * before


@pytest.mark.slow
def test_xla_train_step():
    # train.jit_compile compiles the whole step, batch-norm's fused path and its gradient included.
    config = small_config("crnn", "majmin", "train.jit_compile=true", "train.steps_per_execution=1")
    model = model_lib.compile_model(model_lib.build_model(config), config, steps_per_epoch=1)
    batch = learnable_problem(config, batch=2, frames=8)
    before = [w.copy() for w in model.get_weights()]
    # Batched without drop_remainder: the batch size is unknown when XLA compiles, as in a real pipeline.
    data = tf.data.Dataset.from_tensor_slices(batch).batch(2).repeat()
    history = model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(np.any(a != b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_compile_model_schedules(schedule):
    config = small_config("crnn", "majmin", f"train.lr_schedule={schedule}", "train.epochs=2")
    model = model_lib.compile_model(model_lib.build_model(config), config, steps_per_epoch=5)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(config.train.weight_decay)
    if schedule == "cosine":
        schedule_fn = optimizer._learning_rate
        assert float(schedule_fn(0)) == pytest.approx(config.train.learning_rate)
        assert float(schedule_fn(10)) == pytest.approx(0.0, abs=1e-9)
    else:
        optimizer.learning_rate = 1e-4  # what ReduceLROnPlateau does
        assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="lr_schedule"):
        model_lib.compile_model(model, small_config("crnn", "majmin", "train.lr_schedule=step"), 5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_train_step(policy):
    config = small_config("crnn", "majmin")
    model = model_lib.build_model(config, precision=policy)
    # The policy is the model's own: Keras's global one is left as it was.
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.dtype_policy.name == policy
    assert model.get_layer("conv_0").compute_dtype == ("float16" if policy == "mixed_float16" else "bfloat16")
    # Under mixed_bfloat16 the GRUs compute in float32 (see build_model); otherwise in the policy's dtype.
    assert model.get_layer("bigru_0").compute_dtype == ("float16" if policy == "mixed_float16" else "float32")
    model_lib.compile_model(model, config, steps_per_epoch=1)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    batch = learnable_problem(config, batch=2, frames=8)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_step(batch)  # eagerly: the graph build is what takes time, not the step
    assert np.isfinite(float(logs["loss"]))
    assert any(np.any(a != b) for a, b in zip(before, model.get_weights()))
    assert all(v.dtype == tf.float32 for v in model(batch[0]).values())


@pytest.mark.slow
def test_one_replica_mirrored_strategy_gives_the_plain_loss():
    config = small_config("crnn", "majmin")
    x, y, mask = random_batch(config, batch=4)
    mask[1, 6:] = 0.0
    ds = tf.data.Dataset.from_tensors((x, y, mask))
    plain = model_lib.build_model(config)
    model_lib.compile_model(plain, config, 1)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        mirrored = model_lib.build_model(config)
        model_lib.compile_model(mirrored, config, 1)
    mirrored.set_weights(plain.get_weights())
    expected = plain.evaluate(ds, verbose=0, return_dict=True)
    assert mirrored.evaluate(ds, verbose=0, return_dict=True) == pytest.approx(expected, rel=1e-6)


TWO_REPLICAS = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    import test_model as t
    from chordkeras import model as model_lib

    keras.utils.set_random_seed(0)
    config = t.small_config("crnn", "majmin", "model.dropout=0.0")
    x, y, mask = t.random_batch(config, batch=4, frames=10)
    x[2:, 3:], mask[2:, 3:] = 0.0, 0.0  # the second replica's half is mostly padding
    ds = tf.data.Dataset.from_tensors((x, y, mask))

    def run(strategy):
        with strategy.scope():
            model = model_lib.build_model(config)
            for layer in model._flatten_layers():
                if isinstance(layer, model_lib.MaskedBatchNorm):
                    layer.trainable = False  # per-replica batch statistics would differ by design
            model.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)  # tracing costs more than a step
        model.set_weights(initial)
        metrics = model.evaluate(ds, verbose=0, return_dict=True)
        model.fit(ds, epochs=1, verbose=0)
        return metrics, model.get_weights()

    initial = model_lib.build_model(config).get_weights()
    plain_metrics, plain_weights = run(tf.distribute.get_strategy())
    two_metrics, two_weights = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(plain_weights, two_weights))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(plain_weights, initial))
    print(json.dumps({"plain": plain_metrics, "two": two_metrics, "worst": worst, "moved": moved}))
""")


@pytest.mark.slow
def test_two_replicas_add_up_to_the_single_device_loss_and_step():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS, os.path.dirname(__file__)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["two"] == pytest.approx(out["plain"], rel=1e-5)
    assert out["moved"] > 1e-3  # the step did something ...
    assert out["worst"] < 1e-5  # ... and the same thing on two replicas


def test_level_normalisation_by_hand():
    """Magnitudes (log_scale * |X|) of 2 bins over 4 frames, window 3 (one frame either side).

    Frame levels (mean over bins): 2, 4, 0 (digital silence), 8. Local levels: (2+4)/2 = 3,
    (2+4+0)/3 = 2, (4+0+8)/3 = 4, (0+8)/2 = 4 (the window stops at the excerpt's ends).
    Output: log1p(magnitude / local level).
    """
    magnitude = np.array([[[1.0, 3.0], [2.0, 6.0], [0.0, 0.0], [16.0, 0.0]]], np.float32)
    layer = model_lib.LevelNormalization(3, floor=1e-12)  # a floor far below the levels: out of the figures
    out = layer(tf.math.log1p(magnitude), tf.ones([1, 4])).numpy()
    local = np.array([3.0, 2.0, 4.0, 4.0])[None, :, None]
    np.testing.assert_allclose(out, np.log1p(magnitude / local), rtol=1e-6)
    assert np.all(out[0, 2] == 0.0)
    # A masked (padding) frame counts for nothing: with the last frame masked, frame 2's level is 6/2 = 3.
    masked = layer(tf.math.log1p(magnitude), tf.constant([[1.0, 1.0, 1.0, 0.0]])).numpy()
    np.testing.assert_allclose(masked[0, 2], 0.0)
    np.testing.assert_allclose(masked[0, 1], np.log1p(magnitude[0, 1] / 2.0), rtol=1e-6)
    np.testing.assert_allclose(masked[0, 3], 0.0)
    with pytest.raises(ValueError, match="floor must be positive"):
        model_lib.LevelNormalization(3, floor=0.0)


@pytest.mark.parametrize("architecture", ["crnn", "transformer"])
def test_model_outputs_do_not_depend_on_the_playback_level(architecture):
    """The same magnitudes at 0, -20, -40 and -60 dB give the same logits (float rounding aside)."""
    config = resolve("tiny", [f"model.architecture={architecture}", "model.transformer_dim=16",
                              "model.transformer_heads=2"])
    model = model_lib.build_model(config)
    rng = np.random.default_rng(0)
    magnitude = (rng.random((2, 60, config.features.n_bins)) ** 6 * 0.05).astype(np.float32)
    outputs = []
    for gain_db in (0, -20, -40, -60):
        spectrogram = np.log1p(config.features.log_scale * magnitude * 10 ** (gain_db / 20)).astype(np.float32)
        outputs.append(model(spectrogram, training=False))
    for other in outputs[1:]:
        for name in model_lib.OUTPUT_NAMES:
            np.testing.assert_allclose(other[name].numpy(), outputs[0][name].numpy(), atol=2e-3)
            assert np.array_equal(np.argmax(other[name], -1), np.argmax(outputs[0][name], -1))


def test_digital_silence_says_no_chord():
    """Frames whose every bin is 0 (or below 1e-6, -160 dB) are N with no root, bass or pitch class;
    a frame 100 dB down is left to the network."""
    config = resolve("tiny")
    model = model_lib.build_model(config)
    rng = np.random.default_rng(1)
    spectrogram = np.log1p(100 * rng.random((1, 12, config.features.n_bins)) * 0.05).astype(np.float32)
    spectrogram[0, 3:6] = 0.0
    spectrogram[0, 6] = 5e-7
    spectrogram[0, 7] = np.log1p(100 * 1e-5)               # every bin 100 dB below a full-scale sine: not silent
    out = model(spectrogram, training=False)
    silent = [3, 4, 5, 6]
    np.testing.assert_array_equal(np.argmax(out["chord"][0].numpy()[silent], -1), 0)
    np.testing.assert_array_equal(np.argmax(out["root"][0].numpy()[silent], -1), vocab.NO_CHORD)
    np.testing.assert_array_equal(np.argmax(out["bass"][0].numpy()[silent], -1), vocab.NO_CHORD)
    assert np.all(out["pitches"][0].numpy()[silent] < -1000)
    assert np.all(np.abs(out["pitches"][0].numpy()[7]) < 1000)


def test_loss_leaves_out_digital_silence_by_hand():
    """Real recordings open on digital silence, whose outputs are forced; with label smoothing each such
    frame would cost about 2000 (every other class at -2e4 log-probability): they carry no loss."""
    config = resolve("tiny", ["train.label_smoothing=0.1"])
    model = model_lib.build_model(config)
    large = vocab.get_vocabulary("large")
    rng = np.random.default_rng(3)
    x = np.log1p(100 * rng.random((1, 8, config.features.n_bins)) * 0.05).astype(np.float32)
    x[0, :2] = 0.0  # the song opens on two frames of digital silence (real frames: the song goes on)
    # Skewed labels, as in real music: mostly C major; the annotation's first chord starts in the silence.
    chords = ["N", "C:maj", "C:maj", "C:maj", "C:maj", "G:7", "C:maj", "C:maj"]
    encoded = [vocab.encode_targets(c) for c in chords]
    y = {"chord": np.array([[large.encode(c) for c in chords]], np.int32),
         "root": np.array([[e[1] for e in encoded]], np.int32),
         "bass": np.array([[e[2] for e in encoded]], np.int32),
         "pitches": np.array([[[(e[3] >> k) & 1 for k in range(12)] for e in encoded]], np.float32)}
    mask = np.ones((1, 8), np.float32)
    out = {k: v.numpy()[0].astype(np.float64) for k, v in model(x, training=False).items()}

    def smoothed_ce(logits, label, eps=0.1):
        lp = logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))
        return -((1 - eps) * lp[label] + eps * lp.mean())

    weights = dict(config.train.loss_weights)

    def frame_loss(t):
        z, p = out["pitches"][t], y["pitches"][0, t]
        return (weights["chord"] * smoothed_ce(out["chord"][t], y["chord"][0, t])
                + weights["root"] * smoothed_ce(out["root"][t], y["root"][0, t])
                + weights["bass"] * smoothed_ce(out["bass"][t], y["bass"][0, t])
                + weights["pitches"] * np.mean(np.maximum(z, 0) - z * p + np.log1p(np.exp(-np.abs(z)))))

    expected = sum(frame_loss(t) for t in range(2, 8)) / 6 + sum(float(v) for v in model.losses)
    assert evaluate(model, x, y, mask)["loss"] == pytest.approx(expected, rel=1e-5)
    # What the two silent frames would have added: over 1900 each.
    assert min(frame_loss(0), frame_loss(1)) > 1900
    # A song without digital silence keeps every frame in the loss.
    x[0, :2] = 0.01
    out = {k: v.numpy()[0].astype(np.float64) for k, v in model(x, training=False).items()}
    assert evaluate(model, x, y, mask)["loss"] == pytest.approx(sum(frame_loss(t) for t in range(8)) / 8, rel=1e-5)
