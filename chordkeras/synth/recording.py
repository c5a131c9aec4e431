"""The recording chain: what happens to a mix between the instruments and the listener.

Every stage takes mono float audio and returns audio of the same length and timing, so the chord
labels stay exact: rooms are simulated with the direct sound at time zero, codec delays are
measured and removed, and tape wow moves the audio by a few milliseconds at most.

`record` draws a whole chain per song from the song's generator (domain randomisation, with the
probabilities and ranges in `TRAINING_CHAIN`); the single stages are public so that
`benchmarks/robustness.py` can apply conditions outside those ranges to songs training never saw.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import scipy.signal

SPEED_OF_SOUND = 343.0
# Codec settings by name: (soundfile format, subtype, compression level, bitrate mode). The
# compression level is libsndfile's: for MP3 at 22050 Hz (MPEG-2 layer III, constant bitrate)
# 0.0 -> 160 kb/s, 0.2 -> 128, 0.4 -> 96, 0.6 -> 64, 0.85 -> 32, 0.95 -> 16 (measured from file sizes).
CODECS = {
    "mp3_160": ("MP3", "MPEG_LAYER_III", 0.0, "CONSTANT"),
    "mp3_128": ("MP3", "MPEG_LAYER_III", 0.2, "CONSTANT"),
    "mp3_96": ("MP3", "MPEG_LAYER_III", 0.4, "CONSTANT"),
    "mp3_64": ("MP3", "MPEG_LAYER_III", 0.6, "CONSTANT"),
    "mp3_32": ("MP3", "MPEG_LAYER_III", 0.85, "CONSTANT"),
    "mp3_16": ("MP3", "MPEG_LAYER_III", 0.95, "CONSTANT"),
    "ogg_q9": ("OGG", "VORBIS", 0.1, None),
    "ogg_q5": ("OGG", "VORBIS", 0.5, None),
    "ogg_q0": ("OGG", "VORBIS", 0.99, None),
}
# Largest codec delay searched for when re-aligning decoded audio (LAME adds 1105 samples here).
_MAX_CODEC_DELAY = 4096


@dataclasses.dataclass(frozen=True)
class ChainRanges:
    """Probabilities and ranges of the randomised recording chain (one draw per song)."""

    room: float = 0.85                      # chance of a simulated room
    rt60: tuple[float, float] = (0.15, 2.5)  # reverberation time, seconds (log-uniform)
    room_length: tuple[float, float] = (3.0, 40.0)   # metres (log-uniform); width and height follow
    compression: float = 0.45               # chance of a bus compressor
    limiting: float = 0.25                  # chance of driving a limiter / clipper
    saturation: float = 0.2                 # chance of tape/valve saturation (tanh)
    speaker: float = 0.1                    # chance of a small loudspeaker or phone microphone
    hum: float = 0.2                        # chance of mains hum (50 or 60 Hz and harmonics)
    hum_snr_db: tuple[float, float] = (10.0, 50.0)
    crowd: float = 0.1                      # chance of crowd babble
    crowd_snr_db: tuple[float, float] = (12.0, 35.0)
    noise_snr_db: tuple[float, float] = (20.0, 65.0)  # broadband noise, always present
    wow: float = 0.15                       # chance of tape wow and flutter
    codec: float = 0.35                     # chance of a lossy codec
    codecs: tuple[str, ...] = ("mp3_160", "mp3_128", "mp3_96", "mp3_64", "ogg_q9", "ogg_q5")


TRAINING_CHAIN = ChainRanges()


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def biquad(kind: str, freq: float, gain_db: float, sr: int, q: float = 0.707) -> np.ndarray:
    """RBJ-cookbook biquad as one SOS row: kind "low"/"high" shelf or "peak"."""
    a_gain = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sr
    cos, alpha = np.cos(w0), np.sin(w0) / 2 / q
    if kind == "peak":
        b = [1 + alpha * a_gain, -2 * cos, 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * cos, 1 - alpha / a_gain]
    else:
        sq = 2 * np.sqrt(a_gain) * alpha
        sign = 1 if kind == "low" else -1
        b = [a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos + sq),
             sign * 2 * a_gain * ((a_gain - 1) - sign * (a_gain + 1) * cos),
             a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos - sq)]
        a = [(a_gain + 1) + sign * (a_gain - 1) * cos + sq,
             -sign * 2 * ((a_gain - 1) + sign * (a_gain + 1) * cos),
             (a_gain + 1) + sign * (a_gain - 1) * cos - sq]
    return np.concatenate([np.array(b) / a[0], np.array(a) / a[0]])[None, :]


# ---------------------------------------------------------------------------------------------
# Rooms


def room_impulse(rng: np.random.Generator, sample_rate: int, rt60: float, length: float) -> np.ndarray:
    """Impulse response of a shoebox room, direct sound at sample 0, unit energy.

    Early reflections come from pyroomacoustics' image-source model (up to order 6); the late tail is noise decaying at `rt60` with the high end
    decaying faster, spliced on where the image sources thin out. Width and height are drawn from
    `length` (width 0.5-1 x length, height 2.4 m to 0.5 x length); source and microphone stand at
    random places at least 0.5 m from every wall.
    """
    import pyroomacoustics as pra

    dims = np.array([length, length * rng.uniform(0.5, 1.0), min(max(2.4, length * rng.uniform(0.2, 0.5)), 15.0)])
    # Sabine's formula for the wall absorption; a large room cannot be as dry as a small one, so
    # the absorption is capped (its reverberation then lasts longer than `rt60`).
    volume, surface = np.prod(dims), 2 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
    absorption = float(np.clip(0.161 * volume / (surface * rt60), 0.02, 0.95))
    # (pyroomacoustics' randomised image sources draw from NumPy's global generator: left off, so a
    # song depends on its own generator only.)
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=6)
    source, mic = (rng.uniform(0.5, dims - 0.5) for _ in range(2))
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    early = np.asarray(room.rir[0][0], np.float64)
    # Direct sound to sample 0 (the fractional-delay filter peaks on it): labels keep their times.
    early = early[int(np.argmax(np.abs(early))):]
    # Image sources up to order 6 hold every reflection only until sound has crossed the smallest
    # dimension six times; from there on a decaying noise tail at the level of the early part
    # continues the response (crossfaded over the second half of that span).
    complete = max(int(6 * dims.min() / SPEED_OF_SOUND * sample_rate), 8)
    n = max(int(1.5 * rt60 * sample_rate), len(early))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    damped = scipy.signal.lfilter([0.35], [1.0, -0.65], tail)
    mix = np.linspace(0.2, 1.0, n)
    tail = (1 - mix) * tail + mix * damped
    window = slice(complete // 2, complete)
    early = np.pad(early, (0, max(n - len(early), 0)))[:n]
    tail *= np.sqrt(np.mean(early[window] ** 2) / (np.mean(tail[window] ** 2) + 1e-20))
    fade = np.clip((np.arange(n) - complete // 2) / max(complete - complete // 2, 1), 0.0, 1.0)
    ir = (1 - fade) * early + fade * tail
    return ir / (np.sqrt(np.sum(ir**2)) + 1e-12)


def reverberate(audio: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolves with an impulse response (direct sound at 0), same length and RMS as the input."""
    wet = scipy.signal.oaconvolve(audio, ir)[: len(audio)]
    return wet * np.sqrt(np.mean(audio**2)) / (np.sqrt(np.mean(wet**2)) + 1e-12)


# ---------------------------------------------------------------------------------------------
# Dynamics


def compress(audio: np.ndarray, sample_rate: int, threshold_db: float, ratio: float, time_constant: float) -> np.ndarray:
    """Feed-forward RMS compressor: above `threshold_db` (relative to the input's RMS) the level
    grows 1/`ratio` as fast; the detector is a one-pole smoother of `time_constant` seconds.
    Make-up gain restores the input's RMS."""
    pole = np.exp(-1.0 / (time_constant * sample_rate))
    power = scipy.signal.lfilter([1 - pole], [1, -pole], audio**2)
    rms = np.sqrt(np.mean(audio**2)) + 1e-12
    level_db = 10 * np.log10(np.maximum(power, 1e-20)) - 20 * np.log10(rms)
    gain_db = -np.maximum(level_db - threshold_db, 0.0) * (1 - 1 / ratio)
    out = audio * 10 ** (gain_db / 20)
    return out * rms / (np.sqrt(np.mean(out**2)) + 1e-12)


def clip(audio: np.ndarray, drive_db: float, soft: bool) -> np.ndarray:
    """Drives the peak `drive_db` above full scale into a clipper (tanh when `soft`), back to the input's peak."""
    peak = np.max(np.abs(audio)) + 1e-12
    x = audio / peak * 10 ** (drive_db / 20)
    y = np.tanh(x) / np.tanh(10 ** (drive_db / 20)) if soft else np.clip(x, -1.0, 1.0)
    return y * peak


# ---------------------------------------------------------------------------------------------
# Microphones, loudspeakers, noise, tape


def speaker(audio: np.ndarray, sample_rate: int, low_hz: float, high_hz: float, resonances: list[tuple[float, float]]) -> np.ndarray:
    """A small loudspeaker or phone: band-pass `low_hz`-`high_hz` and resonant peaks (Hz, dB)."""
    sos = [scipy.signal.butter(4, low_hz, "highpass", fs=sample_rate, output="sos")]
    if high_hz < sample_rate / 2 * 0.95:
        sos.append(scipy.signal.butter(4, high_hz, "lowpass", fs=sample_rate, output="sos"))
    sos += [biquad("peak", freq, gain, sample_rate) for freq, gain in resonances]
    out = scipy.signal.sosfilt(np.concatenate(sos), audio)
    return out * np.sqrt(np.mean(audio**2)) / (np.sqrt(np.mean(out**2)) + 1e-12)


def hum(num_samples: int, sample_rate: int, mains_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Mains hum of unit RMS: the fundamental and odd/even harmonics with random levels and phases."""
    t = np.arange(num_samples) / sample_rate
    harmonics = [k for k in range(1, 12) if k * mains_hz < sample_rate / 2]
    out = sum(rng.uniform(0.05, 1.0) / k**0.5 * np.sin(2 * np.pi * k * mains_hz * t + rng.uniform(0, 2 * np.pi))
              for k in harmonics)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def crowd(num_samples: int, sample_rate: int, rng: np.random.Generator, voices: int = 12) -> np.ndarray:
    """Crowd babble of unit RMS: noise through a vowel-like formant pair per talker, with syllabic
    (3-6 Hz) amplitude modulation and pauses, summed over `voices` talkers."""
    t = np.arange(num_samples) / sample_rate
    out = np.zeros(num_samples)
    for _ in range(voices):
        sos = np.concatenate([
            scipy.signal.butter(2, [200, 3500], "bandpass", fs=sample_rate, output="sos"),
            biquad("peak", rng.uniform(300, 900), 12, sample_rate),
            biquad("peak", rng.uniform(900, 2500), 9, sample_rate),
        ])
        talk = scipy.signal.sosfilt(sos, rng.standard_normal(num_samples))
        syllables = np.maximum(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6.3)), 0.0)
        pauses = np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3)) > -0.3
        out += talk * syllables * pauses * rng.uniform(0.3, 1.0)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def coloured_noise(num_samples: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    """White, pink or brown noise of unit RMS."""
    white = rng.standard_normal(num_samples)
    if colour == "pink":
        white = scipy.signal.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                                     [1.0, -2.494956002, 2.017265875, -0.522189400], white)
    elif colour == "brown":
        white = scipy.signal.lfilter([1.0], [1.0, -0.995], white)
    elif colour != "white":
        raise ValueError(f"unknown noise colour {colour!r}")
    return white / (np.sqrt(np.mean(white**2)) + 1e-12)


def add_at_snr(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Adds unit-RMS `noise` at `snr_db` below the RMS of `audio`."""
    return audio + noise * np.sqrt(np.mean(audio**2)) * 10 ** (-snr_db / 20)


def wow_and_flutter(audio: np.ndarray, sample_rate: int, wow_cents: float, wow_hz: float, flutter_cents: float,
                    flutter_hz: float) -> np.ndarray:
    """Tape speed drift: a slow (wow) and a fast (flutter) sinusoidal pitch deviation in cents.

    Implemented as a time-varying read position; the audio never moves by more than
    cents / 1731 / (2 pi f) seconds (a few milliseconds), so labels stay aligned.
    """
    t = np.arange(len(audio)) / sample_rate
    delay = np.zeros_like(t)
    for cents, hz in ((wow_cents, wow_hz), (flutter_cents, flutter_hz)):
        ratio = 2 ** (cents / 1200) - 1          # peak relative speed deviation
        delay += ratio / (2 * np.pi * hz) * np.sin(2 * np.pi * hz * t)
    return np.interp(t - delay, t, audio)


def codec(audio: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
    """Encodes with a lossy codec (`CODECS`) and decodes again, re-aligned to the input.

    The encoder's delay (if the decoder keeps it) is found by cross-correlation and removed, so
    the output has the input's length and timing.
    """
    import soundfile

    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; choose from {sorted(CODECS)}")
    file_format, subtype, level, mode = CODECS[name]
    peak = np.max(np.abs(audio)) + 1e-12
    scale = 0.95 / peak if peak > 0.95 else 1.0
    buffer = io.BytesIO()
    extra = {"bitrate_mode": mode} if mode else {}
    soundfile.write(buffer, (audio * scale).astype(np.float32), sample_rate, format=file_format, subtype=subtype,
                    compression_level=level, **extra)
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float64")
    if decoded.ndim > 1:
        decoded = decoded.mean(axis=1)
    lag = codec_delay(audio, decoded)
    decoded = decoded[lag: lag + len(audio)]
    return np.pad(decoded, (0, len(audio) - len(decoded))) / scale


def codec_delay(original: np.ndarray, decoded: np.ndarray) -> int:
    """Samples by which `decoded` lags `original` (0 to 4096), from the peak of their cross-correlation."""
    n = min(len(original), len(decoded), 30 * 48000)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.conj(np.fft.rfft(original[:n], size)) * np.fft.rfft(decoded[:n], size), size)
    return int(np.argmax(corr[: _MAX_CODEC_DELAY + 1]))


# ---------------------------------------------------------------------------------------------
# The whole chain


def record(audio: np.ndarray, sample_rate: int, rng: np.random.Generator,
           ranges: ChainRanges = TRAINING_CHAIN) -> tuple[np.ndarray, dict]:
    """Draws and applies a recording chain: room, dynamics, loudspeaker, noise, hum, crowd, tape, codec.

    Args:
        audio: Mono float mix.
        sample_rate: Its rate.
        rng: The song's generator: every choice is drawn from it.
        ranges: Probabilities and ranges of each stage.

    Returns:
        (float64 audio of the same length, the stages applied with their parameters).
    """
    x = np.asarray(audio, np.float64)
    applied: dict = {}
    if rng.random() < ranges.room:
        rt60 = _log_uniform(rng, *ranges.rt60)
        length = _log_uniform(rng, *ranges.room_length)
        x = reverberate(x, room_impulse(rng, sample_rate, rt60, length))
        applied["room"] = {"rt60": round(rt60, 3), "length_m": round(length, 2)}
    if rng.random() < ranges.compression:
        params = {"threshold_db": float(rng.uniform(-12, 3)), "ratio": float(rng.uniform(2, 8)),
                  "time_constant": _log_uniform(rng, 0.005, 0.1)}
        x = compress(x, sample_rate, **params)
        applied["compression"] = params
    if rng.random() < ranges.limiting:
        params = {"drive_db": float(rng.uniform(1, 12)), "soft": bool(rng.random() < 0.5)}
        x = clip(x, **params)
        applied["limiting"] = params
    if rng.random() < ranges.saturation:
        params = {"drive_db": float(rng.uniform(3, 12)), "soft": True}
        x = clip(x, **params)
        applied["saturation"] = params
    if rng.random() < ranges.speaker:
        low, high = float(rng.uniform(120, 450)), float(rng.uniform(3500, 9000))
        peaks = [(_log_uniform(rng, 300, 4000), float(rng.uniform(-6, 10))) for _ in range(int(rng.integers(1, 4)))]
        x = speaker(x, sample_rate, low, high, peaks)
        applied["speaker"] = {"low_hz": low, "high_hz": high, "resonances": peaks}
    colour = str(rng.choice(["white", "pink", "brown"], p=[0.3, 0.5, 0.2]))
    snr = float(rng.uniform(*ranges.noise_snr_db))
    x = add_at_snr(x, coloured_noise(len(x), rng, colour), snr)
    applied["noise"] = {"colour": colour, "snr_db": snr}
    if rng.random() < ranges.hum:
        mains, snr = float(rng.choice([50.0, 60.0])), float(rng.uniform(*ranges.hum_snr_db))
        x = add_at_snr(x, hum(len(x), sample_rate, mains, rng), snr)
        applied["hum"] = {"mains_hz": mains, "snr_db": snr}
    if rng.random() < ranges.crowd:
        snr = float(rng.uniform(*ranges.crowd_snr_db))
        x = add_at_snr(x, crowd(len(x), sample_rate, rng), snr)
        applied["crowd"] = {"snr_db": snr}
    if rng.random() < ranges.wow:
        params = {"wow_cents": float(rng.uniform(3, 25)), "wow_hz": float(rng.uniform(0.3, 2.0)),
                  "flutter_cents": float(rng.uniform(0, 6)), "flutter_hz": float(rng.uniform(6, 15))}
        x = wow_and_flutter(x, sample_rate, **params)
        applied["wow"] = params
    if rng.random() < ranges.codec:
        name = str(rng.choice(ranges.codecs))
        x = codec(x, sample_rate, name)
        applied["codec"] = name
    return x, applied
