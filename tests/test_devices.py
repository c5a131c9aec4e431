"""Precision per device: read from the CPU's flags, resolved per policy, set only where asked."""

import keras
import pytest

from chordkeras import devices

# The flags line of /proc/cpuinfo on an x86 CPU with and without native bfloat16 arithmetic.
WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
WITH_AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n"
WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return path
    return write


def test_bfloat16_support_is_read_from_the_flags(cpuinfo, tmp_path):
    assert devices.cpu_supports_bfloat16(cpuinfo(WITH_BF16)) is True
    assert devices.cpu_supports_bfloat16(cpuinfo(WITH_AMX)) is True
    assert devices.cpu_supports_bfloat16(cpuinfo(WITHOUT)) is False
    # No cpuinfo at all (macOS): no bfloat16.
    assert devices.cpu_supports_bfloat16(tmp_path / "missing") is False


def test_resolve_precision(cpuinfo):
    bf16 = cpuinfo(WITH_BF16)
    assert devices.resolve_precision("auto", "cuda", bf16) == "mixed_float16"
    assert devices.resolve_precision("auto", "metal", bf16) == "float32"
    assert devices.resolve_precision("auto", "cpu", bf16) == "mixed_bfloat16"
    assert devices.resolve_precision("off", "cuda", bf16) == "float32"
    assert devices.resolve_precision("float32", "cpu", bf16) == "float32"
    assert devices.resolve_precision("mixed_float16", "cpu", bf16) == "mixed_float16"
    plain = cpuinfo(WITHOUT)
    assert devices.resolve_precision("auto", "cpu", plain) == "float32"
    assert devices.resolve_precision("mixed_bfloat16", "cpu", plain) == "mixed_bfloat16"
    with pytest.raises(ValueError, match="mixed_precision"):
        devices.resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="device kind"):
        devices.resolve_precision("auto", "tpu")


def test_dtype_policy_restores_the_global_policy():
    assert keras.mixed_precision.global_policy().name == "float32"
    with devices.dtype_policy("mixed_bfloat16"):
        assert keras.layers.Dense(2).compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with devices.dtype_policy("mixed_float16"):
            raise RuntimeError("a failing build")
    assert keras.mixed_precision.global_policy().name == "float32"
