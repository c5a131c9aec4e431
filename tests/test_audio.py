"""Decoding audio files written here by soundfile: formats, channels, rates and bad files."""

import numpy as np
import pytest
import soundfile

from chordkeras.audio import AudioError, audio_duration, load_audio
from chordkeras.config import FeatureConfig

RATE = FeatureConfig().sample_rate


def stereo_tones(rate, seconds=1.0):
    """Left: 0.5 * sine 440 Hz; right: 0.25 * the same; their mean is 0.375 * sine."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)


def expected_mono(seconds=1.0, amplitude=0.375):
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * 440.0 * t)


@pytest.mark.parametrize("rate", [44100, 22050])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    "suffix, subtype",
    [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_32"), ("wav", "FLOAT"),
     ("flac", "PCM_16"), ("flac", "PCM_24")],
)
def test_load_audio_formats(tmp_path, suffix, subtype, channels, rate):
    data = stereo_tones(rate)
    if channels == 1:
        data = data[:, :1]
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(path, data, rate, subtype=subtype)
    audio = load_audio(path, RATE)
    assert audio.dtype == np.float32 and audio.shape == (RATE,)
    want = expected_mono(amplitude=0.375 if channels == 2 else 0.5)
    # 16-bit quantisation is 3e-5; resampling rings briefly at the abrupt ends of the tone.
    middle = slice(RATE // 8, -RATE // 8)
    np.testing.assert_allclose(audio[middle], want[middle], atol=1e-3)
    if rate == RATE:
        np.testing.assert_allclose(audio, want, atol=1e-4)
    assert audio_duration(path) == pytest.approx(1.0)


def test_load_audio_ogg(tmp_path):
    path = tmp_path / "tone.ogg"
    soundfile.write(path, stereo_tones(44100), 44100)
    audio = load_audio(path, RATE)
    assert abs(audio.size - RATE) < 0.01 * RATE  # lossy codec: padding may differ by a frame
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    assert np.fft.rfftfreq(audio.size, 1 / RATE)[spectrum.argmax()] == pytest.approx(440.0, abs=2.0)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nothing\.wav: file not found"):
        load_audio(tmp_path / "nothing.wav", RATE)
    with pytest.raises(AudioError, match="file not found"):
        audio_duration(tmp_path / "nothing.wav")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.flac: empty file \(0 bytes\)"):
        load_audio(path, RATE)


@pytest.mark.parametrize("name", ["garbage.wav", "garbage.flac", "garbage.aiff"])
def test_unreadable_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 20)
    with pytest.raises(AudioError, match=rf"{name}: unreadable audio"):
        load_audio(path, RATE)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_zero_length(tmp_path, subtype):
    path = tmp_path / "silent.wav"  # a valid header and no frames (a zero-frame FLAC is written as 0 bytes)
    soundfile.write(path, np.zeros((0, 2), np.float32), 44100, subtype=subtype)
    with pytest.raises(AudioError, match="contains no samples"):
        load_audio(path, RATE)


def test_non_finite_samples(tmp_path):
    data = expected_mono()
    data[100:103] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "broken.wav"
    soundfile.write(path, data.astype(np.float32), RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"broken\.wav: 3 of 22050 samples are not finite"):
        load_audio(path, RATE)


def test_audio_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError) as caught:
        load_audio(tmp_path / "x.wav", RATE)
    assert caught.value.path == str(tmp_path / "x.wav") and caught.value.problem == "file not found"


def test_mp3_sources_open_together_each_read_their_own_file(tmp_path):
    """tensorflow-io's MP3 tensors share one decoder (the file opened last); sources must not."""
    from chordkeras.audio import open_audio

    rate = 16000
    t = np.arange(4 * rate) / rate
    tones = {"a": 440.0, "b": 660.0}
    for name, freq in tones.items():
        soundfile.write(tmp_path / f"{name}.mp3", 0.5 * np.sin(2 * np.pi * freq * t), rate, format="MP3")

    def peak_hz(samples):
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]

    a = open_audio(tmp_path / "a.mp3", rate)
    first = a.read(rate, 2 * rate)
    b = open_audio(tmp_path / "b.mp3", rate)
    assert np.array_equal(a.read(rate, 2 * rate), first)        # opening b does not change what a reads
    assert peak_hz(b.read(rate, 2 * rate)) == pytest.approx(660.0, abs=1.0)
    assert peak_hz(a.read(rate, 2 * rate)) == pytest.approx(440.0, abs=1.0)
