"""Which device trains (Metal GPU, CUDA GPU or CPU), its precision, and the tf.distribute strategy.

The same code path runs everywhere: the device is found at run time, never assumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
from typing import Iterator

import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "one-device", "mirrored", "multi-worker")
PRECISIONS = ("auto", "off", "float32", "mixed_float16", "mixed_bfloat16")
DEVICE_KINDS = ("cpu", "cuda", "metal")


@dataclasses.dataclass(frozen=True)
class Device:
    """The training device: kind is 'metal', 'cuda' or 'cpu'."""

    kind: str
    name: str
    count: int

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"CPU ({self.name}, {os.cpu_count()} cores)"
        label = "Metal GPU (tensorflow-metal)" if self.kind == "metal" else "CUDA GPU"
        return f"{self.count} x {label}: {self.name}"


def detect_device() -> Device:
    """Finds the accelerator TensorFlow can see, falling back to the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return Device("cpu", platform.processor() or platform.machine(), 1)
    details = tf.config.experimental.get_device_details(gpus[0])
    name = details.get("device_name", gpus[0].name)
    # tensorflow-metal registers its GPU as a PluggableDevice on macOS; CUDA builds report a
    # compute capability.
    kind = "metal" if platform.system() == "Darwin" else "cuda"
    if kind == "cuda":
        capability = details.get("compute_capability")
        if capability:
            name = f"{name} (compute capability {capability[0]}.{capability[1]})"
    return Device(kind, name, len(gpus))


def enable_memory_growth() -> None:
    """Lets several processes share a GPU instead of the first grabbing all its memory."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (ValueError, RuntimeError):  # already initialised, or not supported by the plugin
            pass


def make_strategy(name: str, device: Device) -> tf.distribute.Strategy:
    """Builds the tf.distribute strategy named on the command line.

    auto: mirrored when several GPUs are visible, multi-worker when TF_CONFIG names a cluster,
    otherwise the default strategy. multi-worker reads the cluster from TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {STRATEGIES}")
    if name == "auto":
        if _tf_config_cluster_size() > 1:
            name = "multi-worker"
        elif device.kind != "cpu" and device.count > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if device.kind != "cpu" else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if _tf_config_cluster_size() < 1:
        raise ValueError("--strategy multi-worker needs TF_CONFIG with a cluster and this task's index")
    return MultiWorkerMirroredStrategy()


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """tf.distribute.MultiWorkerMirroredStrategy that reduces scalars the way Keras 3 asks it to.

    Keras (3.15) reduces every step output with `reduce("MEAN", value, axis=0)`, which fails on the
    scalar metrics of a train step under this strategy (tensorflow#72388). A scalar has no axis 0:
    it is reduced across replicas only, as MirroredStrategy does.
    """

    def reduce(self, reduce_op, value, axis):
        local = value.values[0] if isinstance(value, tf.distribute.DistributedValues) else value
        if axis is not None and tf.convert_to_tensor(local).shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def _tf_config_cluster_size() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    return sum(len(v) for v in cluster.values())


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one worker that writes checkpoints, logs and the exported model."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


# ---------------------------------------------------------------------------------------------
# Precision


def cpu_supports_bfloat16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX-BF16).

    Read from the `flags` line of Linux's `cpuinfo`; False where there is none (macOS, ARM).
    """
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(policy: str, device_kind: str, cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The Keras dtype policy name for a `train.mixed_precision` value on a device kind.

    'auto': CUDA -> mixed_float16 (tensor cores); CPU with AVX512_BF16/AMX -> mixed_bfloat16
    (faster for the default model, see benchmarks/model_speed.py), other CPUs -> float32;
    Metal -> float32 (tensorflow-metal's float16 kernels do not cover the recurrent layers
    reliably, and its speed-up on these small models is not worth the risk). 'off' -> float32.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"unknown mixed_precision {policy!r}; choose from {PRECISIONS}")
    if device_kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {device_kind!r}; choose from {DEVICE_KINDS}")
    if policy in ("off", "float32"):
        return "float32"
    if policy != "auto":
        return policy
    if device_kind == "cuda":
        return "mixed_float16"
    if device_kind == "cpu" and cpu_supports_bfloat16(cpuinfo):
        return "mixed_bfloat16"
    return "float32"


def set_precision(policy: str, device_kind: str) -> str:
    """Resolves `policy` for the device (see `resolve_precision`) and sets Keras's global policy.

    Returns:
        The policy name set ('float32', 'mixed_float16' or 'mixed_bfloat16').
    """
    name = resolve_precision(policy, device_kind)
    keras.mixed_precision.set_global_policy(name)
    return name


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras's global dtype policy is `name` inside the block and what it was before afterwards.

    Keras layers take the global policy when they are created; this lets a builder choose the
    policy of the layers it creates without leaving it changed for the caller.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
