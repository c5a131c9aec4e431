"""The chord network: `build_model(config)` and the `ChordModel` that trains it.

Two architectures share the input normalisation, the convolutional front end and the heads.
The input first loses the recording's level (`LevelNormalization`: each frame divided by the mean
magnitude of the frames around it), so the same music gives the same output at any playback level;
at inference it is then moved to A440 by its own tuning estimate (`TuningCorrection`); frames of
digital silence are N by construction (`SilenceIsNoChord`).

- 'crnn': per-bin batch normalisation, 2-D convolutions over time x frequency (downsampling
  frequency only, by stride or max-pool, so every frame keeps its own output), a dense frame
  embedding, then bidirectional GRU layers.
- 'transformer': the same front end, a convolutional relative position embedding (as in
  wav2vec 2.0, so it works for any length), then pre-norm transformer encoder blocks.

Heads (float32 logits, one vector per frame): 'root' (13), 'bass' (13), 'pitches' (12, sigmoid)
and 'chord' (the vocabulary's classes). The chord head also reads the root, bass and pitch-class
probabilities (structured training, as in McFee & Bello 2017): the chord class is mostly a function
of those, and the auxiliary targets are what carries over between vocabularies.

Padding: the model finds it from the spectrogram itself (the datasets pad with zeros, and silence
is exactly 0 in the features): the all-zero frames after the last non-zero one are masked. They
are left out of batch-norm statistics, zeroed between layers (so 'same' convolutions see what
they would see at the true end), skipped by the recurrent layers and not attended to, so appending
padding to a song changes none of its outputs. The heads see the mask as a feature, so trailing
silence still learns to say N.

`ChordModel` computes the multi-task loss itself: label-smoothed cross-entropy for chord, root and
bass (frames labelled -1 are ignored), sigmoid cross-entropy for the pitch classes, each summed over
the real frames (mask 1) and divided by the number of real frames in the global batch, so padding
changes nothing and replicas of a tf.distribute strategy add up to the single-device loss. Frames of
digital silence are left out of the loss: their outputs are decided by construction, nothing can
learn from them, and the saturated logits would make label smoothing cost about 2000 per frame
(real recordings open and close on digital silence: 1.6% of the frames of a studio collection
turned its loss from about 1.4 into 8-33 while the accuracies were normal).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from chordkeras import devices, startup, vocab
from chordkeras import features as features_lib
from chordkeras.config import RunConfig

ARCHITECTURES = ("crnn", "transformer")
# How a conv block halves (or divides by its pool factor) the frequency axis; see ConvBlock.
DOWNSAMPLING = ("stride", "max_pool")
# Output name -> number of logits (the chord head's size comes from the vocabulary): root and bass
# are a pitch class or none (vocab.NO_CHORD, the last class), pitches one sigmoid per pitch class.
AUX_HEADS = {"root": vocab.NO_CHORD + 1, "bass": vocab.NO_CHORD + 1, "pitches": len(vocab.PITCH_NAMES)}
OUTPUT_NAMES = ("chord", "root", "bass", "pitches")
# Width of the convolutional position embedding of the transformer, in frames (about 1.4 s at the
# default 10.8 frames/s): long enough to give every frame its neighbourhood, short enough to stay
# a relative (translation-invariant) encoding.
POSITION_KERNEL = 15
# Logit magnitude that `SilenceIsNoChord` writes: softmax and sigmoid saturate to exactly 0 and 1.
_FORCED_LOGIT = 1e4
# A frame whose every bin is at most this is digital silence (SilenceIsNoChord).
SILENCE_THRESHOLD = features_lib.SILENCE_THRESHOLD

_serializable = keras.saving.register_keras_serializable(package="chordkeras")


# --------------------------------------------------------------------------------------------
# Layers


@_serializable
class FrameMask(layers.Layer):
    """Right-padding mask [B, T]: 1.0 up to the last frame with a non-zero bin, 0.0 after it.

    Trailing all-zero frames are the zero padding of a batch (or a song's trailing digital
    silence, which needs no chord either); silence inside a song stays a real frame. Right
    padding is also the only mask cuDNN's recurrent kernels accept. The first frame always
    counts, so no sequence is entirely masked.
    """

    def __init__(self, **kwargs):
        # Decided in float32: a float16 cast could flush tiny magnitudes to zero.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, spectrogram):
        length = features_lib.sounding_length(spectrogram)
        return tf.sequence_mask(tf.maximum(length, 1), tf.shape(spectrogram)[1], dtype=tf.float32)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@_serializable
class ApplyFrameMask(layers.Layer):
    """Multiplies features [B, T, ...] by a frame mask [B, T] (zeroes masked frames).

    It consumes any Keras mask attached to `features`: the frame mask replaces it.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def call(self, features, frame_mask):
        return _zero_masked(features, frame_mask)

    def compute_output_shape(self, features_shape, frame_mask_shape=None):
        return tuple(features_shape)


@_serializable
class SignalFlag(layers.Layer):
    """The frame mask [B, T] as a feature column [B, T, 1] for the heads."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, frame_mask):
        return tf.cast(frame_mask, tf.float32)[..., None]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (1,)


@_serializable
class LevelNormalization(layers.Layer):
    """Takes the recording's level out of a log1p(log_scale * |X|) spectrogram [B, T, F].

    Each frame's magnitudes are divided by the local level: the mean magnitude over all bins of
    the real frames within `window_frames` around it (a centred moving average; frames past either
    end of the excerpt or masked by `frame_mask` do not count). The ratios are compressed again as
    log1p(`gain` * ratio); with the default gain of 1, songs of the built-in data (about -20 dBFS
    RMS) keep the median, 90th and 99th percentiles of their features within 0.3 of the raw ones.

    A gain on the audio scales magnitudes and local level alike, so the output does not change with
    the playback level, as long as the local level stays well above `floor` (1e-7 in log_scale
    units, about -140 dB below a full-scale sine). A moving window rather than the whole song: quiet
    intros and loud choruses each come out at the network's working level, while the dynamics
    within a few seconds (onsets, decays) stay. Digital silence stays exactly 0.
    """

    def __init__(self, window_frames: int, gain: float = 1.0, floor: float = 1e-7, **kwargs):
        # In float32: the division spans the whole dynamic range of the recording.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if window_frames < 1:
            raise ValueError(f"window_frames must be >= 1, got {window_frames}")
        if not floor > 0.0:
            raise ValueError(f"floor must be positive (the level it adds keeps every division finite), got {floor}")
        self.window_frames = int(window_frames)
        self.gain = float(gain)
        self.floor = float(floor)

    def call(self, spectrogram, frame_mask):
        spectrogram = tf.cast(spectrogram, tf.float32)
        mask = tf.cast(frame_mask, tf.float32)
        magnitude = tf.math.expm1(tf.maximum(spectrogram, 0.0))
        level = tf.reduce_mean(magnitude, axis=-1) * mask
        # Moving sums as a convolution with a box (no cumulative-sum cancellation between a loud
        # passage and a quiet one 100 dB below it). An odd width keeps the window centred.
        width = self.window_frames | 1
        box = tf.ones([width, 1, 1], tf.float32)
        sums = tf.nn.conv1d(level[..., None], box, 1, "SAME")
        counts = tf.nn.conv1d(mask[..., None], box, 1, "SAME")
        reference = sums[..., 0] / tf.maximum(counts[..., 0], 1.0)
        # A plain division (floor > 0): converters map divide_no_nan to one that gives 0 / 0 = NaN.
        ratio = magnitude / (reference[..., None] + self.floor)
        return tf.math.log1p(self.gain * ratio) * mask[..., None]

    def compute_output_shape(self, spectrogram_shape, frame_mask_shape=None):
        return tuple(spectrogram_shape)

    def get_config(self):
        return {**super().get_config(), "window_frames": self.window_frames, "gain": self.gain, "floor": self.floor}


@_serializable
class TuningCorrection(layers.Layer):
    """At inference, moves an input played off concert pitch back to A440 (a [B, T, F] log-frequency spectrogram).

    Many recordings sit a fraction of a semitone away from A440 (a tape running fast or slow, an
    instrument tuned by ear). Training covers small offsets (the pump's detuning), but a song 30 or
    40 cents off falls between the quarter-tone bins and costs the network its pitch. This layer
    estimates each input's tuning t from its own spectral peaks (`features.estimate_tuning`: from
    `first_bin` up, over the real frames of `frame_mask`) and, if |t| <= `max_semitones`, moves the
    input by -t semitones, interpolating linearly between neighbouring bins (as the pump's `detune`);
    beyond it, which semitone the players meant is a coin flip, and the input passes unchanged.

    Inference only (`training` False or unset): in training the pump's detuning keeps teaching the
    network small offsets. No weights; the estimate needs nothing but the input, so it runs the same
    in every exported format. Zero frames (padding, digital silence) stay zero.
    """

    def __init__(self, bins_per_semitone: int, fmin_midi: float, first_bin: int = 0, max_semitones: float = 0.4,
                 **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if bins_per_semitone < 2:
            raise ValueError(f"bins_per_semitone must be >= 2 to read a tuning, got {bins_per_semitone}")
        if not 0.0 < max_semitones < 0.5:
            raise ValueError(f"max_semitones must lie in (0, 0.5), got {max_semitones}")
        if first_bin < 0:
            raise ValueError(f"first_bin must be >= 0, got {first_bin}")
        self.bins_per_semitone = int(bins_per_semitone)
        self.fmin_midi = float(fmin_midi)
        self.first_bin = int(first_bin)
        self.max_semitones = float(max_semitones)

    def estimate(self, spectrogram, frame_mask):
        """The tuning [B] of each input in semitones, in (-0.5, 0.5] (0 if it has no peak)."""
        return features_lib.estimate_tuning(spectrogram, frame_mask, self.bins_per_semitone, self.fmin_midi,
                                            self.first_bin)

    def call(self, spectrogram, frame_mask, training=None):
        spectrogram = tf.cast(spectrogram, tf.float32)
        if training:
            return spectrogram
        return features_lib.to_a440(spectrogram, frame_mask, self.bins_per_semitone, self.fmin_midi,
                                    self.first_bin, self.max_semitones)

    def compute_output_shape(self, spectrogram_shape, frame_mask_shape=None):
        return tuple(spectrogram_shape)

    def get_config(self):
        return {**super().get_config(), "bins_per_semitone": self.bins_per_semitone, "fmin_midi": self.fmin_midi,
                "first_bin": self.first_bin, "max_semitones": self.max_semitones}


@_serializable
class SilenceIsNoChord(layers.Layer):
    """Frames of digital silence say N: chord class 0, root and bass 'none', no pitch class.

    A frame is silent when no bin of the input spectrogram exceeds `threshold` (1e-6 in
    log1p(log_scale * |X|) units: every bin more than 160 dB below a full-scale sine, which neither
    16- nor 24-bit audio can hold but as exact zeros, and which leaves 100 dB of room below the
    quietest passage of a recording played 60 dB down). Everything louder, however quiet, is left
    to the network, which sees it at its working level (`LevelNormalization`).
    """

    def __init__(self, threshold: float = SILENCE_THRESHOLD, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def call(self, outputs, spectrogram):
        silent = silent_frames(spectrogram, self.threshold)[..., None]
        forced = {}
        for name, logits in outputs.items():
            logits = tf.cast(logits, tf.float32)
            size = logits.shape[-1]
            if name == "pitches":
                quiet = tf.fill(tf.shape(logits), -_FORCED_LOGIT)
            else:
                target = 0 if name == "chord" else vocab.NO_CHORD
                quiet = tf.zeros_like(logits) + tf.one_hot(target, size, on_value=_FORCED_LOGIT,
                                                           off_value=-_FORCED_LOGIT)
            forced[name] = tf.where(silent, quiet, logits)
        return forced

    def compute_output_shape(self, outputs_shape, spectrogram_shape=None):
        return outputs_shape

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def silent_frames(spectrogram, threshold: float = SILENCE_THRESHOLD) -> tf.Tensor:
    """Bool [B, T]: the frames of digital silence, whose outputs `SilenceIsNoChord` decides."""
    return tf.reduce_max(tf.cast(spectrogram, tf.float32), axis=-1) <= threshold


# The layers that compute in float32 under every precision policy: they read the spectrogram's whole
# dynamic range or decide on tiny values. The app formats keep them float32 too (chordkeras.formats).
FLOAT32_LAYERS = (FrameMask, SignalFlag, LevelNormalization, TuningCorrection, SilenceIsNoChord)


@_serializable
class MaskedBatchNorm(layers.Layer):
    """Batch normalisation over the last axis whose statistics count only real frames.

    Inputs [B, T, ...] with a frame mask [B, T]; masked frames are zero on output. Statistics are
    float32 whatever the policy (as keras.layers.BatchNormalization keeps them). A training batch
    with no masked frame (the usual case: excerpts are shorter than songs) goes through TF's fused
    batch-norm kernel, which reads a bfloat16 input directly and does in one pass forward and one
    backward what the masked moments do as separate ops; a batch with padding takes the masked moments, where the mask
    enters as a broadcast multiplication (cheaper on CPU than Keras's masked moments, a `where` on
    a broadcast copy of the mask). Inputs of rank above 4 always take the masked moments.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        shape = (input_shape[-1],)
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma", autocast=False)
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta", autocast=False)
        self.moving_mean = self.add_weight(shape=shape, initializer="zeros", name="moving_mean", trainable=False,
                                           autocast=False)
        self.moving_variance = self.add_weight(shape=shape, initializer="ones", name="moving_variance",
                                               trainable=False, autocast=False)

    def call(self, features, frame_mask, training=None):
        if not (training and self.trainable):
            return self._normalise(features, frame_mask, self.moving_mean, self.moving_variance)
        # Training excerpts rarely hold padding: then TF's fused kernel (one pass forward, one
        # backward) gives the same statistics as the masked moments, in fewer ops.
        if features.shape.rank in (3, 4):
            all_real = tf.reduce_all(tf.not_equal(frame_mask, 0.0))
            out, mean, variance = tf.cond(all_real, lambda: self._fused(features),
                                          lambda: self._masked(features, frame_mask))
        else:
            out, mean, variance = self._masked(features, frame_mask)
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return out

    def _fused(self, features):
        """All frames real: statistics over every position of [B, T, (F,) C] by the fused kernel."""
        # The kernel wants [N, H, W, C]; [B, T, C] gets a unit axis. (Slicing, not a reshape to
        # -1: XLA cannot pad a dynamic reshape's gradient.)
        flat = features.shape.rank == 3
        x = features[:, :, None, :] if flat else features
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, self.gamma, self.beta, epsilon=self.epsilon,
                                                             is_training=True)
        # The kernel returns the unbiased variance; the moving average keeps the biased one, as
        # the masked path does.
        count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        return tf.cast(y[:, :, 0, :] if flat else y, self.compute_dtype), mean, variance

    def _masked(self, features, frame_mask):
        """Statistics over the real frames only (in float32); masked frames zero on output."""
        x = tf.cast(features, tf.float32)
        mask = _broadcastable_mask(frame_mask, x)
        axes = list(range(features.shape.rank - 1))
        # Real frames times the size of the middle axes the mask broadcasts over.
        per_frame = tf.size(x) // (tf.size(mask) * tf.shape(x)[-1])
        count = tf.maximum(tf.reduce_sum(mask) * tf.cast(per_frame, tf.float32), 1.0)
        mean = tf.reduce_sum(x * mask, axes) / count
        variance = tf.reduce_sum(tf.square((x - mean) * mask), axes) / count
        return self._normalise(features, frame_mask, mean, variance), mean, variance

    def _normalise(self, features, frame_mask, mean, variance):
        x = tf.cast(features, tf.float32)
        scale = self.gamma * tf.math.rsqrt(variance + self.epsilon)
        out = (x * scale + (self.beta - mean * scale)) * _broadcastable_mask(frame_mask, x)
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(self, features_shape, frame_mask_shape=None):
        return tuple(features_shape)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


@_serializable
class ConvBlock(layers.Layer):
    """Conv2D over time x frequency ('same' padding) that downsamples frequency, BN, ReLU, dropout.

    Downsampling by `pool` along frequency, by `downsampling`:
    - 'stride': the convolution steps `pool` bins at a time (computes only the outputs it keeps);
    - 'max_pool': a full-resolution convolution, then a max-pool.
    'stride' skips both the outputs a max-pool would drop and the max-pool with its gradient.

    The dropout mask is drawn once per excerpt and shared by its frames (variational dropout).

    Inputs [B, T, F, C] and a frame mask [B, T]; output [B, T, F', filters] with masked frames zero
    (F' = ceil(F / pool) for 'stride', floor for 'max_pool'), so the next convolution sees exactly
    what 'same' padding would give it. `downsampling` defaults to 'max_pool', which is what saved
    models from before the option hold; `build_model` passes `model.downsampling`.
    """

    def __init__(self, filters: int, kernel_size: int, pool: int, dropout: float, downsampling: str = "max_pool",
                 **kwargs):
        super().__init__(**kwargs)
        if downsampling not in DOWNSAMPLING:
            raise ValueError(f"unknown model.downsampling {downsampling!r}; choose from {DOWNSAMPLING}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.pool = pool
        self.dropout = dropout
        self.downsampling = downsampling
        policy = self.dtype_policy
        stride = (1, pool) if downsampling == "stride" else (1, 1)
        self.conv = layers.Conv2D(filters, kernel_size, strides=stride, padding="same", use_bias=False, dtype=policy)
        # Pooling before the normalisation halves its cost; BN and ReLU commute with a max-pool
        # up to the sign of the BN scale, which training settles.
        self.pooling = (layers.MaxPooling2D((1, pool), dtype=policy)
                        if pool > 1 and downsampling == "max_pool" else None)
        self.norm = MaskedBatchNorm(dtype=policy)
        # One dropout mask per excerpt shared by all its frames: a tiny random draw instead of
        # one per element of a full-resolution feature map, and independent
        # of the sequence length, so padding does not change it either.
        self.drop = layers.Dropout(dropout, noise_shape=(None, 1, None, None), dtype=policy)

    def build(self, input_shape):
        self.conv.build(input_shape)
        shape = self.conv.compute_output_shape(input_shape)
        if self.pooling is not None:
            shape = self.pooling.compute_output_shape(shape)
        self.norm.build(shape)

    def call(self, features, frame_mask, training=None):
        h = self.conv(features)
        if self.pooling is not None:
            h = self.pooling(h)
        h = tf.nn.relu(self.norm(h, frame_mask, training=training))
        return self.drop(h, training=training)  # masked frames are still zero

    def output_bins(self, bins: int) -> int:
        return -(-bins // self.pool) if self.downsampling == "stride" else bins // self.pool

    def compute_output_shape(self, features_shape, frame_mask_shape=None):
        b, t, f, _ = features_shape
        return (b, t, None if f is None else self.output_bins(f), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "pool": self.pool,
            "dropout": self.dropout,
            "downsampling": self.downsampling,
        }


@_serializable
class ConvPositionEmbedding(layers.Layer):
    """Adds a relative position signal: x + GELU(depthwise conv over time of x) (PEG / wav2vec 2.0)."""

    def __init__(self, kernel_size: int, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(shape=(self.kernel_size, 1, channels, 1), initializer="glorot_uniform",
                                      name="kernel")
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")

    def call(self, features, frame_mask):
        # Masked frames are zero on input, so 'same' padding and trailing padding look alike.
        features = _zero_masked(features, frame_mask)
        # Time on the height axis: TF 2.16's CPU depthwise kernel crashes on [1, K] filters
        # (what keras.layers.DepthwiseConv1D builds), not on [K, 1] ones.
        kernel = tf.cast(self.kernel, features.dtype)
        h = tf.nn.depthwise_conv2d(features[:, :, None, :], kernel, [1, 1, 1, 1], "SAME")[:, :, 0, :]
        return features + keras.activations.gelu(h + tf.cast(self.bias, features.dtype))

    def compute_output_shape(self, features_shape, frame_mask_shape=None):
        return tuple(features_shape)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@_serializable
class TransformerBlock(layers.Layer):
    """Pre-norm transformer encoder block: x + MHA(LN(x)), then x + FFN(LN(x)); masked keys ignored."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.heads = heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        policy = self.dtype_policy
        if dim % heads:
            raise ValueError(f"transformer_dim={dim} is not a multiple of transformer_heads={heads}")
        self.attention_norm = layers.LayerNormalization(dtype=policy)
        self.attention = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, dtype=policy)
        self.ffn_norm = layers.LayerNormalization(dtype=policy)
        self.ffn_in = layers.Dense(ffn_dim, activation="gelu", dtype=policy)
        self.ffn_out = layers.Dense(dim, dtype=policy)
        self.drop = layers.Dropout(dropout, dtype=policy)

    def build(self, input_shape):
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.ffn_norm.build(input_shape)
        self.ffn_in.build(input_shape)
        self.ffn_out.build(tuple(input_shape[:-1]) + (self.ffn_dim,))

    def call(self, features, frame_mask, training=None):
        keys = tf.cast(frame_mask, tf.bool)[:, None, :]  # [B, 1, S]: which frames may be attended to
        attention_mask = tf.broadcast_to(keys, tf.stack([tf.shape(keys)[0], tf.shape(features)[1], tf.shape(keys)[2]]))
        h = self.attention_norm(features)
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = features + self.drop(h, training=training)
        h = self.ffn_out(self.ffn_in(self.ffn_norm(x)))
        return x + self.drop(h, training=training)

    def compute_output_shape(self, features_shape, frame_mask_shape=None):
        return tuple(features_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "heads": self.heads,
            "ffn_dim": self.ffn_dim,
            "dropout": self.dropout,
        }


def _broadcastable_mask(frame_mask: tf.Tensor, features: tf.Tensor) -> tf.Tensor:
    """The frame mask [B, T] reshaped to [B, T, 1, ...] in the dtype of `features`."""
    mask = tf.cast(frame_mask, features.dtype)
    return tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([features.shape.rank - 2], tf.int32)], 0))


def _zero_masked(features: tf.Tensor, frame_mask: tf.Tensor) -> tf.Tensor:
    return features * _broadcastable_mask(frame_mask, features)


@_serializable
class InputStall(keras.metrics.Metric):
    """Share of training wall time spent between steps: waiting for the next batch.

    Each train step stamps its start (once its batch has arrived) and its end (once gradients and
    metrics are computed). The gap from one step's end to the next one's start is the time the loop
    spent outside the step: fetching the next batch from the input pipeline (the part that matters),
    plus the callbacks' and the loop's own overhead, so the figure errs on the high side. The first gap
    of an epoch is not counted (the metric is reset at epoch start).
    """

    def __init__(self, name: str = "input_stall", **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        # Timings are the same on every replica; the first one's are kept.
        make = lambda n: self.add_variable(shape=(), initializer="zeros", dtype="float64",  # noqa: E731
                                           aggregation="only_first_replica", name=n)
        self.last_end, self.waiting, self.busy = make("last_end"), make("waiting"), make("busy")

    def update_state(self, step_start, step_end):
        step_start, step_end = tf.cast(step_start, tf.float64), tf.cast(step_end, tf.float64)
        previous = self.last_end.value
        self.waiting.assign_add(tf.where(previous > 0, step_start - previous, tf.constant(0.0, tf.float64)))
        self.busy.assign_add(step_end - step_start)
        self.last_end.assign(step_end)

    def result(self):
        return tf.cast(tf.math.divide_no_nan(self.waiting.value, self.waiting.value + self.busy.value), tf.float32)


@_serializable
class FrameRatio(keras.metrics.Metric):
    """Running sum of a numerator over a running sum of a denominator (e.g. correct / valid frames).

    Both are sums, so replicas of a tf.distribute strategy and batches with padding combine exactly.
    """

    def __init__(self, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.numerator = self.add_variable(shape=(), initializer="zeros", name="numerator")
        self.denominator = self.add_variable(shape=(), initializer="zeros", name="denominator")

    def update_state(self, numerator, denominator):
        self.numerator.assign_add(tf.cast(numerator, self.dtype))
        self.denominator.assign_add(tf.cast(denominator, self.dtype))

    def result(self):
        return tf.math.divide_no_nan(self.numerator.value, self.denominator.value)


# --------------------------------------------------------------------------------------------
# The model


def num_classes(vocabulary: str) -> int:
    """Number of chord classes of a vocabulary name."""
    return vocab.get_vocabulary(vocabulary).num_classes


def majmin_table(vocabulary: str) -> np.ndarray:
    """int32 [num_classes]: each class of `vocabulary` -> its majmin class, or -1 (dim, sus, X, ...).

    A class maps through the first large-vocabulary class that reduces to it (large classes are
    ordered with the plain triads first, so C:maj stands for the majmin vocabulary's C:maj).
    """
    target = vocab.get_vocabulary(vocabulary)
    majmin = vocab.get_vocabulary("majmin")
    table = np.full(target.num_classes, vocab.IGNORE, dtype=np.int32)
    assigned = np.zeros(target.num_classes, dtype=bool)
    for large_class, cls in enumerate(target.from_large):
        if cls >= 0 and not assigned[cls]:
            table[cls] = majmin.from_large[large_class]
            assigned[cls] = True
    return table


def _front_end(spectrogram, frame_mask, config: RunConfig, embedding_dim: int):
    """Input normalisation and conv blocks -> masked frame embeddings [B, T, embedding_dim]."""
    model = config.model
    if len(model.conv_filters) != len(model.pool_frequency):
        raise ValueError(
            f"model.conv_filters {model.conv_filters} and model.pool_frequency {model.pool_frequency} "
            "must have the same length (one pooling factor per conv block)"
        )
    n_bins = config.features.n_bins
    h = spectrogram
    if model.level_window_seconds > 0:
        window = max(1, int(round(model.level_window_seconds * config.features.frame_rate)))
        h = LevelNormalization(window, name="level_norm")(h, frame_mask)
    if not 0.0 <= model.tuning_correction < 0.5:
        raise ValueError(f"model.tuning_correction must lie in [0, 0.5) semitone (0 turns it off), "
                         f"got {model.tuning_correction}")
    if model.tuning_correction > 0:
        if config.features.bins_per_semitone < 2:
            raise ValueError(f"model.tuning_correction needs at least 2 bins per semitone (features.bins_per_octave "
                             f"{config.features.bins_per_octave}); set model.tuning_correction=0")
        h = TuningCorrection(config.features.bins_per_semitone, features_lib.fmin_midi(config.features),
                             first_bin=features_lib.tuning_first_bin(config.features),
                             max_semitones=model.tuning_correction, name="tuning")(h, frame_mask)
    # In float32: a bfloat16 input would keep only 8 bits of each log-magnitude.
    h = MaskedBatchNorm(name="input_norm", dtype="float32")(h, frame_mask)
    h = layers.Reshape((-1, n_bins, 1), name="add_channel")(h)
    bins = n_bins
    for i, (filters, pool) in enumerate(zip(model.conv_filters, model.pool_frequency)):
        if pool < 1 or bins // pool < 1:
            raise ValueError(f"model.pool_frequency {model.pool_frequency} pools {n_bins} bins away")
        block = ConvBlock(filters, model.conv_kernel, pool, model.dropout, model.downsampling, name=f"conv_{i}")
        h = block(h, frame_mask)
        bins = block.output_bins(bins)
    channels = model.conv_filters[-1] if model.conv_filters else 1
    h = layers.Reshape((-1, bins * channels), name="frames")(h)
    h = layers.Dense(embedding_dim, use_bias=False, name="embedding")(h)
    h = MaskedBatchNorm(name="embedding_norm")(h, frame_mask)
    h = layers.Activation("relu", name="embedding_relu")(h)
    return layers.Dropout(model.dropout, noise_shape=(None, 1, None), name="embedding_dropout")(h)


def _heads(h, frame_mask, num_chord_classes: int) -> dict[str, Any]:
    """Auxiliary heads, then the chord head over the hidden state and the auxiliary probabilities."""
    signal = SignalFlag(name="signal")(frame_mask)
    features = layers.Concatenate(name="head_features", dtype="float32")([h, signal])
    outputs = {name: layers.Dense(size, name=name, dtype="float32")(features) for name, size in AUX_HEADS.items()}
    structure = [
        layers.Softmax(name="root_probabilities", dtype="float32")(outputs["root"]),
        layers.Softmax(name="bass_probabilities", dtype="float32")(outputs["bass"]),
        layers.Activation("sigmoid", name="pitch_probabilities", dtype="float32")(outputs["pitches"]),
    ]
    chord_features = layers.Concatenate(name="chord_features", dtype="float32")([features] + structure)
    outputs["chord"] = layers.Dense(num_chord_classes, name="chord", dtype="float32")(chord_features)
    return {name: outputs[name] for name in OUTPUT_NAMES}


def build_model(config: RunConfig, class_weights: np.ndarray | Sequence[float] | None = None,
                precision: str | None = None) -> "ChordModel":
    """Builds the chord network named by `config.model.architecture` (not compiled).

    Args:
        config: Run configuration; reads `model`, `features.n_bins`, `data.vocabulary` and the
            loss settings of `train` (loss_weights, label_smoothing).
        class_weights: Optional per-class weights of the chord loss, length num_classes.
        precision: Keras dtype policy of the layers ('float32', 'mixed_float16', 'mixed_bfloat16');
            default: Keras's global policy (the one `devices.set_precision` sets for a run). The
            global policy is the same afterwards.

    Returns:
        A ChordModel: spectrogram float32 [batch, frames, n_bins] -> dict of float32 logits
        chord [B, T, num_classes], root [B, T, 13], bass [B, T, 13], pitches [B, T, 12].
    """
    startup.spend_onednn_bool_notice()
    if precision is None:
        precision = keras.mixed_precision.global_policy().name
    with devices.dtype_policy(precision):
        return _build_model(config, class_weights, precision)


def _build_model(config: RunConfig, class_weights, precision: str) -> "ChordModel":
    model = config.model
    if model.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown model.architecture {model.architecture!r}; choose from {ARCHITECTURES}")
    classes = num_classes(config.data.vocabulary)
    spectrogram = keras.Input((None, config.features.n_bins), dtype="float32", name="spectrogram")
    frame_mask = FrameMask(name="frame_mask")(spectrogram)
    if model.architecture == "crnn":
        h = _front_end(spectrogram, frame_mask, config, model.embedding_dim)
        # Under mixed_bfloat16 (the CPU policy) the GRUs stay in float32: TF's CPU recurrent loop
        # runs its gates as many small ops, which gain nothing from bfloat16 there.
        rnn_dtype = "float32" if precision == "mixed_bfloat16" else None
        for i in range(model.rnn_layers):
            gru = layers.GRU(model.rnn_units, return_sequences=True, dtype=rnn_dtype)
            h = layers.Bidirectional(gru, name=f"bigru_{i}", dtype=rnn_dtype)(h, mask=frame_mask)
            h = layers.Dropout(model.dropout, noise_shape=(None, 1, None), name=f"bigru_{i}_dropout")(h)
    else:
        dim = model.transformer_dim
        h = _front_end(spectrogram, frame_mask, config, dim)
        h = ConvPositionEmbedding(POSITION_KERNEL, name="positions")(h, frame_mask)
        for i in range(model.transformer_layers):
            h = TransformerBlock(dim, model.transformer_heads, 2 * dim, model.dropout, name=f"transformer_{i}")(
                h, frame_mask
            )
        h = layers.LayerNormalization(name="final_norm")(h)
    h = ApplyFrameMask(name="hidden")(h, frame_mask)
    outputs = SilenceIsNoChord(name="silence")(_heads(h, frame_mask, classes), spectrogram)
    weights = None
    if class_weights is not None:
        weights = [float(w) for w in np.asarray(class_weights, dtype=np.float64).reshape(-1)]
        if len(weights) != classes:
            raise ValueError(f"class_weights has {len(weights)} entries; vocabulary {config.data.vocabulary!r} "
                             f"has {classes} classes")
    return ChordModel(
        inputs=spectrogram,
        outputs=outputs,
        name=f"chordkeras_{model.architecture}",
        loss_weights=dict(config.train.loss_weights),
        label_smoothing=config.train.label_smoothing,
        class_weights=weights,
        to_majmin=[int(c) for c in majmin_table(config.data.vocabulary)],
    )


@_serializable
class ChordModel(keras.Model):
    """Functional chord network with a masked multi-task `train_step` / `test_step`.

    Data: (spectrogram [B, T, F], targets {chord, root, bass: int32 [B, T], pitches: float32
    [B, T, 12]}, mask float32 [B, T]); the mask is optional (all frames real when absent).

    Metrics (all over real frames): loss, chord_accuracy (frames with a chord label),
    root_accuracy, bass_accuracy, majmin_accuracy (prediction and reference both reduced to
    majmin; frames whose reference has a majmin class), pitches_accuracy (per pitch class).
    """

    def __init__(
        self,
        *args,
        loss_weights: dict[str, float] | None = None,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        to_majmin: Sequence[int] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in OUTPUT_NAMES}
        unknown = set(loss_weights or {}) - set(OUTPUT_NAMES)
        if unknown:
            raise ValueError(f"loss_weights names {sorted(unknown)}; outputs are {OUTPUT_NAMES}")
        self.label_smoothing = float(label_smoothing)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.to_majmin = None if to_majmin is None else [int(c) for c in to_majmin]
        self.frame_metrics = {
            name: FrameRatio(name=name)
            for name in ("loss", "chord_accuracy", "root_accuracy", "bass_accuracy", "majmin_accuracy",
                         "pitches_accuracy")
        }
        self.input_stall = InputStall()

    def get_config(self):
        return {
            **super().get_config(),
            "loss_weights": self.loss_weights,
            "label_smoothing": self.label_smoothing,
            "class_weights": self.class_weights,
            "to_majmin": self.to_majmin,
        }

    @property
    def metrics(self):
        # Only these, so `fit` logs exactly their names (and val_ ones) and resets them per epoch.
        return [*self.frame_metrics.values(), self.input_stall]

    # The loss -------------------------------------------------------------------------------

    def frame_losses(self, targets: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor],
                     mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Weighted per-head loss summed over the real frames of this batch, and their count.

        Returns:
            (loss_sum, frames): float32 scalars; the loss of the batch is loss_sum / frames.
        """
        mask = tf.cast(mask, tf.float32)
        smoothing = self.label_smoothing
        total = tf.constant(0.0, tf.float32)
        for name in ("chord", "root", "bass"):
            labels = tf.cast(targets[name], tf.int32)
            valid = mask * tf.cast(labels >= 0, tf.float32)
            log_probs = tf.nn.log_softmax(tf.cast(outputs[name], tf.float32), axis=-1)
            picked = tf.gather(log_probs, tf.maximum(labels, 0), batch_dims=2)
            ce = -((1.0 - smoothing) * picked + smoothing * tf.reduce_mean(log_probs, axis=-1))
            if name == "chord" and self.class_weights is not None:
                ce *= tf.gather(tf.constant(self.class_weights, tf.float32), tf.maximum(labels, 0))
            total += self.loss_weights[name] * tf.reduce_sum(ce * valid)
        pitches = tf.cast(targets["pitches"], tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=pitches, logits=tf.cast(outputs["pitches"], tf.float32))
        total += self.loss_weights["pitches"] * tf.reduce_sum(tf.reduce_mean(bce, axis=-1) * mask)
        return total, tf.reduce_sum(mask)

    def _regularization(self) -> tf.Tensor:
        if not self.losses:
            return tf.constant(0.0, tf.float32)
        return tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])

    # Steps ----------------------------------------------------------------------------------

    @staticmethod
    def _unpack(data):
        x, y, mask = keras.utils.unpack_x_y_sample_weight(data)
        if mask is None:
            mask = tf.ones(tf.shape(y["chord"]), tf.float32)
        return x, y, tf.cast(mask, tf.float32)

    def loss_mask(self, spectrogram: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """The real frames [B, T] whose outputs the network decides: digital silence left out (see the module doc)."""
        try:
            threshold = self.get_layer("silence").threshold
        except ValueError:  # a model built without the layer decides every frame itself
            return mask
        return mask * tf.cast(tf.logical_not(silent_frames(spectrogram, threshold)), tf.float32)

    def train_step(self, data):
        # XLA cannot compile tf.timestamp; under jit_compile the stall is not measured.
        timed = not self.jit_compile
        x, y, mask = self._unpack(data)
        if timed:
            # Timestamps are ordered only by their dependencies: start once the batch has arrived.
            with tf.control_dependencies(tf.nest.flatten(data)):
                step_start = tf.timestamp()
        replica = tf.distribute.get_replica_context()
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = self(x, training=True)
            loss_sum, frames = self.frame_losses(y, outputs, self.loss_mask(x, mask))
            # Gradients of the replicas are summed: each replica divides its sum by the global
            # frame count, and the (replicated) regularisers by the number of replicas.
            global_frames = replica.all_reduce("sum", frames) if replica is not None else frames
            loss = loss_sum / tf.maximum(global_frames, 1.0) + self._regularization() / num_replicas
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        logs = self.update_frame_metrics(y, outputs, mask, loss_sum, frames)
        if timed:
            # ... and end once the backward pass and the metrics are computed.
            with tf.control_dependencies([g for g in gradients if g is not None] + tf.nest.flatten(logs)):
                step_end = tf.timestamp()
            self.input_stall.update_state(step_start, step_end)
            logs["input_stall"] = self.input_stall.result()
        return logs

    def test_step(self, data):
        x, y, mask = self._unpack(data)
        outputs = self(x, training=False)
        loss_sum, frames = self.frame_losses(y, outputs, self.loss_mask(x, mask))
        return self.update_frame_metrics(y, outputs, mask, loss_sum, frames)

    def update_frame_metrics(self, y, outputs, mask, loss_sum, frames) -> dict[str, tf.Tensor]:
        """Adds a batch to the metrics (see the class docstring) and returns their running values.

        Args:
            y: Targets dict; outputs: logits dict; mask: float [B, T] real frames;
            loss_sum, frames: from `frame_losses`.
        """
        m = self.frame_metrics
        # Frame-weighted, so the epoch's loss is the loss of all its real frames together.
        m["loss"].update_state(loss_sum + self._regularization() * frames, frames)
        predicted = {}
        for name in ("chord", "root", "bass"):
            labels = tf.cast(y[name], tf.int32)
            valid = mask * tf.cast(labels >= 0, tf.float32)
            predicted[name] = tf.argmax(outputs[name], axis=-1, output_type=tf.int32)
            hits = tf.cast(tf.equal(predicted[name], labels), tf.float32) * valid
            m[f"{name}_accuracy"].update_state(tf.reduce_sum(hits), tf.reduce_sum(valid))
        if self.to_majmin is not None:
            table = tf.constant(self.to_majmin, tf.int32)
            labels = tf.cast(y["chord"], tf.int32)
            reference = tf.where(labels >= 0, tf.gather(table, tf.maximum(labels, 0)), -1)
            estimate = tf.gather(table, predicted["chord"])
            valid = mask * tf.cast(reference >= 0, tf.float32)
            hits = tf.cast(tf.equal(estimate, reference), tf.float32) * valid
            m["majmin_accuracy"].update_state(tf.reduce_sum(hits), tf.reduce_sum(valid))
        pitches = tf.cast(y["pitches"], tf.float32) > 0.5
        pitch_hits = tf.cast(tf.equal(outputs["pitches"] > 0.0, pitches), tf.float32) * mask[..., None]
        m["pitches_accuracy"].update_state(tf.reduce_sum(pitch_hits), 12.0 * tf.reduce_sum(mask))
        replica = tf.distribute.get_replica_context()
        if replica is None or tf.distribute.get_strategy().num_replicas_in_sync == 1:
            return {name: metric.result() for name, metric in m.items()}
        # Inside a replica the metric variables hold this replica's share only: add the shares up,
        # so every replica returns the global values (Keras averages the replicas' logs).
        sums = replica.all_reduce("sum", tf.stack([v for metric in m.values()
                                                   for v in (metric.numerator.value, metric.denominator.value)]))
        return {name: tf.math.divide_no_nan(sums[2 * i], sums[2 * i + 1]) for i, name in enumerate(m)}


# --------------------------------------------------------------------------------------------
# Optimiser


def compile_model(model: keras.Model, config: RunConfig, steps_per_epoch: int) -> keras.Model:
    """Compiles with AdamW and the configured schedule; returns the model.

    'cosine' decays over epochs * steps_per_epoch steps; 'plateau' and 'constant' keep a settable
    learning rate (the plateau reduction is a callback of the driver). Biases and normalisation
    scales are not weight-decayed.
    """
    train = config.train
    if train.lr_schedule == "cosine":
        if steps_per_epoch < 1:
            raise ValueError(f"the cosine schedule needs steps_per_epoch >= 1 (got {steps_per_epoch})")
        learning_rate = keras.optimizers.schedules.CosineDecay(train.learning_rate, train.epochs * steps_per_epoch)
    elif train.lr_schedule in ("plateau", "constant"):
        learning_rate = train.learning_rate
    else:
        raise ValueError(f"unknown train.lr_schedule {train.lr_schedule!r}; choose plateau, cosine or constant")
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=train.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer, jit_compile=train.jit_compile, steps_per_execution=train.steps_per_execution)
    return model
