"""Level invariance end to end: a rendered song at four playback levels, through the features and the network."""

import numpy as np
import pytest

from chordkeras import features, model
from chordkeras.config import resolve
from chordkeras.synth import generate, render


@pytest.fixture(scope="module")
def song():
    return generate.make_song(3, 0, render.load_renderer(), 0.25, chain=None)


@pytest.mark.slow
@pytest.mark.parametrize("window_seconds", [4.0, 1.0])
def test_same_output_at_every_level_from_0_to_minus_60_db(song, window_seconds):
    """The song peaking at 0, -20, -40 and -60 dBFS: at least 99% of frames get the same chord (and
    root, bass) at every level, and the chord probabilities differ by less than 1e-3 on every frame
    that is not digital silence at -60 dB (release tails fade into the -160 dB silence threshold
    there, 100 dB below the song's peak)."""
    config = resolve("tiny", [f"model.level_window_seconds={window_seconds}"])
    network = model.build_model(config)
    peak = song.audio / np.max(np.abs(song.audio))
    outputs = []
    for gain_db in (0.0, -20.0, -40.0, -60.0):
        spectrogram = features.log_spectrogram((peak * 10 ** (gain_db / 20)).astype(np.float32), config.features)
        outputs.append({k: v.numpy()[0] for k, v in network(spectrogram[None], training=False).items()})
    audible = spectrogram.numpy().max(-1) > model.SilenceIsNoChord().threshold      # at -60 dB
    assert audible.mean() > 0.9
    frames = outputs[0]["chord"].shape[0]
    assert frames == config.features.num_frames(len(song.audio))
    for other in outputs[1:]:
        for name in ("chord", "root", "bass"):
            same = np.mean(np.argmax(other[name], -1) == np.argmax(outputs[0][name], -1))
            assert same >= 0.99, (name, same)
        probabilities = [np.exp(o["chord"] - o["chord"].max(-1, keepdims=True)) for o in (outputs[0], other)]
        probabilities = [p / p.sum(-1, keepdims=True) for p in probabilities]
        assert np.max(np.abs(probabilities[0] - probabilities[1])[audible]) < 1e-3


def test_without_level_normalisation_the_level_changes_the_output(song):
    """The former input (model.level_window_seconds=0) is not invariant: the test above can fail."""
    config = resolve("tiny", ["model.level_window_seconds=0"])
    network = model.build_model(config)
    peak = (song.audio / np.max(np.abs(song.audio))).astype(np.float32)
    loud = network(features.log_spectrogram(peak, config.features)[None], training=False)["chord"].numpy()
    quiet = network(features.log_spectrogram(peak * 1e-3, config.features)[None], training=False)["chord"].numpy()
    assert np.max(np.abs(loud - quiet)) > 0.01
