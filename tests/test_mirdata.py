"""mirdata's real loaders on data homes built here in each collection's layout; nothing downloads."""

import hashlib
import json
import os
import socket

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from chordkeras import mirdata_source, preparation, prepare, records, vocab
from chordkeras.config import FeatureConfig

pytest.importorskip("mirdata", reason="mirdata is in the test extra: pip install -e '.[test]'")

SR = 22050
FEATURES = FeatureConfig()
LARGE = vocab.get_vocabulary("large")
FRAMES = 1 + 4 * SR // FEATURES.hop_length  # 4 s songs: 44 frames
TIMES = np.arange(FRAMES) * FEATURES.hop_length / SR


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _triad(midi_notes, seconds):
    t = np.arange(int(seconds * SR)) / SR
    freqs = 440.0 * 2 ** ((np.asarray(midi_notes) - 69) / 12)
    return (0.2 * np.sin(2 * np.pi * freqs[:, None] * t)).sum(axis=0).astype(np.float32)


def _audio(path, fmt="WAV"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate([_triad([60, 64, 67], 2.0), _triad([57, 60, 64], 2.0)]), SR, format=fmt)


def _text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _entry(home, files):
    """Index entry {key: [relative path, md5]}; md5 None for files the test never writes."""
    return {key: [rel, _md5(home / rel) if (home / rel).exists() else None] for key, rel in files.items()}


def _write_index(home, name, version, tracks):
    index = home / f"{name}_index_test.json"
    index.write_text(json.dumps({"version": version, "tracks": tracks}))
    return index


def _beatles(home):
    """Isophonics layout: 0101 good (bare 'C' root), 0102 audio missing, 0103 audio corrupt, 0104 'C:sus2',
    0105 a label neither mirdata nor mir_eval reads."""
    tracks = {}
    for n, labels in ((1, "C"), (2, "C"), (3, "C"), (4, "C:sus2"), (5, "C:notachord")):
        song = f"01_-_Please_Please_Me/0{n}_-_Song_{n}"
        files = {"audio": f"audio/{song}.wav", "chords": f"annotations/chordlab/The Beatles/{song}.lab",
                 "beat": f"annotations/beat/The Beatles/{song}.txt", "keys": f"annotations/keylab/The Beatles/{song}.lab",
                 "sections": f"annotations/seglab/The Beatles/{song}.lab"}
        _text(home / files["chords"], f"0.000000 2.000000 {labels}\n2.000000 4.000000 A:min\n")
        if n != 2:
            _audio(home / files["audio"])
        tracks[f"010{n}"] = _entry(home, files)
    corrupt = home / tracks["0103"]["audio"][0]
    data = bytearray(corrupt.read_bytes())
    data[-100:] = bytes(100)  # samples changed after the checksum was taken; still decodes
    corrupt.write_bytes(bytes(data))
    return _write_index(home, "beatles", "1.2", tracks)


def _billboard(home):
    """McGill layout: 0003 good (N, power chord, C:7(#9)), 0035 full.lab changed after its checksum."""
    tracks = {}
    for track_id, song in (("0003", "1960s/James Brown/I Don't Mind"), ("0035", "1970s/Someone/Song")):
        ann = f"McGill-Billboard/{track_id}"
        files = {"audio": f"audio/{song}/audio.flac", "salami": f"{ann}/salami_chords.txt", "lab_full": f"{ann}/full.lab",
                 "lab_majmin7": f"{ann}/majmin7.lab", "lab_majmin7inv": f"{ann}/majmin7inv.lab",
                 "lab_majmin": f"{ann}/majmin.lab", "lab_majmininv": f"{ann}/majmininv.lab",
                 "bothchroma": f"{ann}/bothchroma.csv", "tuning": f"{ann}/tuning.csv"}
        _audio(home / files["audio"], fmt="FLAC")
        _text(home / files["lab_full"], "0.0\t1.0\tN\n1.0\t3.0\tEb:5\n3.0\t4.0\tC:7(#9)\n\n")
        tracks[track_id] = _entry(home, files)
    _text(home / tracks["0035"]["lab_full"][0], "0.0\t4.0\tC:maj\n")
    return _write_index(home, "billboard", "2.0", tracks)


def _guitarset(home):
    """Two excerpts of one piece: comp (kept) and solo (left out); instructed chords differ from performed."""
    def chords(values):
        return {"namespace": "chord", "data": [{"time": t, "duration": 2.0, "value": v, "confidence": 1.0}
                                                for t, v in zip((0.0, 2.0), values)]}

    tracks = {}
    for mode in ("comp", "solo"):
        track_id = f"00_BN1-129-Eb_{mode}"
        files = {"audio_hex_cln": f"audio_hex-pickup_debleeded/{track_id}_hex_cln.wav",
                 "audio_hex": f"audio_hex-pickup_original/{track_id}_hex.wav",
                 "audio_mic": f"audio_mono-mic/{track_id}_mic.wav", "audio_mix": f"audio_mono-pickup_mix/{track_id}_mix.wav",
                 "jams": f"annotation/{track_id}.jams"}
        _audio(home / files["audio_mic"])
        jam = {"annotations": [chords(["D:min7", "G:7"]), chords(["D:min", "G:maj"])],
               "file_metadata": {"duration": 4.0}}
        _text(home / files["jams"], json.dumps(jam))
        tracks[track_id] = _entry(home, files)
    return _write_index(home, "guitarset", "1.1.0", tracks)


@pytest.fixture
def homes(tmp_path):
    built = {}
    for name, build in (("beatles", _beatles), ("billboard", _billboard), ("guitarset", _guitarset)):
        home = tmp_path / "mir_datasets" / name
        built[name] = (home, build(home))
    return built


def _sources(homes, **kwargs):
    return [mirdata_source.MirdataSource(name, data_home=str(home), index=str(index), **kwargs)
            for name, (home, index) in homes.items()]


def _songs(out):
    songs = {}
    for split in records.SPLITS:
        for s in tf.data.TFRecordDataset(records.list_shards(out, split)):
            song = records.parse_song(s)
            songs[song["song_id"].numpy().decode()] = song
    return songs


def _classes(*labels_until):
    """Per-frame large-vocabulary classes of segments given as (end time, label)."""
    expected = np.zeros(FRAMES, np.int64)
    start = 0.0
    for end, label in labels_until:
        expected[(TIMES >= start) & (TIMES < end)] = LARGE.encode(label)
        start = end
    return expected


def test_collections_with_chords_are_found_from_mirdata():
    found, failed = mirdata_source.chord_collections()
    by_name = {c.name: c for c in found}
    assert {"beatles", "billboard", "guitarset", "queen", "rwc_popular"} <= set(by_name)
    assert by_name["beatles"].chord_attributes == ("chords",)
    assert by_name["billboard"].chord_attributes == (
        "chords_full", "chords_majmin", "chords_majmin7", "chords_majmin7inv", "chords_majmininv")
    assert by_name["guitarset"].chord_attributes == ("inferred_chords", "leadsheet_chords")
    assert by_name["beatles"].versions[0] == "1.2" and by_name["guitarset"].versions[0] == "1.1.0"
    # Collections without chords are not listed.
    assert "orchset" not in by_name and "orchset" not in failed
    # Every collection with audio says which chords and audio it reads.
    for c in found:
        if c.has_audio and c.name in mirdata_source.DIALECTS:
            assert c.dialect.chords in c.chord_attributes


def test_three_collections_into_one_dataset_with_bad_tracks_listed(homes, tmp_path):
    out = tmp_path / "out"
    info = preparation.prepare_dataset(_sources(homes), out, FEATURES,
                                       preparation.PrepareConfig(workers=1, songs_per_shard=2), progress=False)
    assert info["song_sources"] == {"beatles/0101": "mirdata:beatles@1.2", "beatles/0104": "mirdata:beatles@1.2",
                                    "billboard/0003": "mirdata:billboard@2.0",
                                    "guitarset/00_BN1-129-Eb_comp": "mirdata:guitarset@1.1.0"}
    counts = {s["label"]: (s["found"], s["prepared"], s["skipped"]) for s in info["sources"]}
    assert counts == {"mirdata:beatles@1.2": (5, 2, {"bad annotation": 1, "checksum": 1, "missing audio": 1}),
                      "mirdata:billboard@2.0": (2, 1, {"checksum": 1}),
                      "mirdata:guitarset@1.1.0": (2, 1, {"left out": 1})}
    reasons = {os.path.basename(item["reason"].split(": ", 1)[0]): (item["kind"], item["reason"])
               for item in info["skipped"]}
    assert reasons["02_-_Song_2.wav"][0] == "missing audio" and "audio missing" in reasons["02_-_Song_2.wav"][1]
    corrupt_md5 = json.loads(homes["beatles"][1].read_text())["tracks"]["0103"]["audio"][1]
    assert reasons["03_-_Song_3.wav"][0] == "checksum"
    assert f"is not the {corrupt_md5} in the source's index" in reasons["03_-_Song_3.wav"][1]
    assert "full.lab" in reasons and reasons["full.lab"][0] == "checksum"
    assert "McGill-Billboard/0035/full.lab: md5" in reasons["full.lab"][1]
    staged = out / "mirdata" / "beatles-1.2" / "0105.lab"
    assert reasons["05_-_Song_5.lab"] == (
        "bad annotation", f"{homes['beatles'][0]}/annotations/chordlab/The Beatles/01_-_Please_Please_Me/05_-_Song_5.lab: "
                          f"{staged}:1: malformed chord label 'C:notachord': not valid Harte syntax")
    assert reasons["00_BN1-129-Eb_solo_mic.wav"][0] == "left out"
    assert "solo excerpt" in reasons["00_BN1-129-Eb_solo_mic.wav"][1]

    songs = _songs(out)
    assert sorted(songs) == sorted(info["song_sources"])
    # Isophonics writes a bare root for a major triad: mir_eval reads 'C' as C:maj.
    np.testing.assert_array_equal(songs["beatles/0101"]["chord"].numpy(), _classes((2.0, "C:maj"), (4.0, "A:min")))
    # 'C:sus2' fails mirdata's Harte pattern; the .lab reader takes the file.
    np.testing.assert_array_equal(songs["beatles/0104"]["chord"].numpy(), _classes((2.0, "C:sus2"), (4.0, "A:min")))
    # Billboard: N, a power chord (class X, root Eb kept), C:7(#9) -> C:7.
    billboard = songs["billboard/0003"]
    np.testing.assert_array_equal(billboard["chord"].numpy(), _classes((1.0, "N"), (3.0, "X"), (4.0, "C:7")))
    np.testing.assert_array_equal(billboard["root"].numpy()[(TIMES >= 1.0) & (TIMES < 3.0)], 3)
    # GuitarSet: the instructed chords (D:min7, G:7), not the performed ones (D:min, G:maj).
    np.testing.assert_array_equal(songs["guitarset/00_BN1-129-Eb_comp"]["chord"].numpy(),
                                  _classes((2.0, "D:min7"), (4.0, "G:7")))
    staged = out / "mirdata" / "guitarset-1.1.0" / "00_BN1-129-Eb_comp.lab"
    assert staged.read_text() == "0.000000\t2.000000\tD:min7\n2.000000\t4.000000\tG:7\n"
    described = {s["label"]: s for s in info["sources"]}["mirdata:guitarset@1.1.0"]
    assert (described["chords"], described["audio_key"], described["annotation_key"]) == (
        "leadsheet_chords", "audio_mic", "jams")
    assert described["index_md5"] == _md5(homes["guitarset"][1])
    assert json.loads((out / "dataset.json").read_text())["sources"] == info["sources"]


def test_cli_folder_plus_collection_and_own_rips(homes, tmp_path, capsys):
    folder = tmp_path / "mine"
    _audio(folder / "song.wav")
    (folder / "song.lab").write_text("0 2 C:maj\n2 4 A:min\n")
    home, index = homes["beatles"]
    args = [str(folder), "--mirdata", "beatles", "--data-home", str(home), "--index", str(index),
            "--root", str(tmp_path / "records"), "--name", "mixed", "--workers", "1", "--no-progress"]
    assert prepare.main(args) == 0
    printed = capsys.readouterr().out
    assert f"  {folder.resolve()}: 1 found, 1 prepared, 0 skipped\n" in printed
    assert ("  mirdata:beatles@1.2: 5 found, 2 prepared, 3 skipped (bad annotation 1, checksum 1, missing audio 1)\n"
            in printed)
    info = json.loads((tmp_path / "records" / "mixed" / "dataset.json").read_text())
    assert info["song_sources"]["song"] == str(folder.resolve())
    assert info["source"] == f"{folder.resolve()} + mirdata:beatles@1.2"
    # Own rips never match the researchers' checksums: --no-audio-checksum takes them.
    assert prepare.main(["--mirdata", "beatles", "--data-home", str(home), "--index", str(index), "--out",
                         str(tmp_path / "rips"), "--workers", "1", "--no-progress", "--no-audio-checksum"]) == 0
    assert "mirdata:beatles@1.2: 5 found, 3 prepared, 2 skipped (bad annotation 1, missing audio 1)" in capsys.readouterr().out


def test_cli_pairs_data_homes_with_collections(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare.main(["--mirdata", "beatles", "--mirdata", "queen", "--data-home", str(tmp_path)])
    assert "--data-home given 1 time(s) for 2 --mirdata" in capsys.readouterr().err


def test_index_with_another_checksum_is_refused_and_nothing_downloads(homes, tmp_path):
    home, index = homes["beatles"]
    (home / "beatles_index_1.2.json").write_bytes(index.read_bytes())
    with pytest.raises(mirdata_source.MirdataError, match=r"beatles_index_1\.2\.json: md5 .* is not the "
                                                          r"6e1276bdab6de05446ddbbc75e6f6cbe mirdata publishes"):
        mirdata_source.open_dataset(mirdata_source.MirdataSource("beatles", data_home=str(home)))
    (home / "beatles_index_1.2.json").unlink()
    import mirdata

    if os.path.exists(mirdata.initialize("beatles").index_path):
        pytest.skip("mirdata's own index folder holds the beatles index on this machine")
    with pytest.raises(mirdata_source.MirdataError, match="chordkeras downloads nothing: fetch it once from "
                                                          "https://zenodo.org/records/14007830"):
        mirdata_source.open_dataset(mirdata_source.MirdataSource("beatles", data_home=str(home)))


def test_official_split_where_mirdata_defines_none_is_refused(homes, tmp_path):
    config = preparation.PrepareConfig(workers=1, official_split=True)
    with pytest.raises(mirdata_source.MirdataError, match="mirdata defines no official split for beatles"):
        preparation.prepare_dataset(_sources(homes)[:1], tmp_path / "out", FEATURES, config, progress=False)


def test_label_conversion_reads_what_mir_eval_reads():
    assert mirdata_source.to_harte(" C:7(#9) ") == "C:7(#9)"
    assert mirdata_source.to_harte("C") == "C"
    with pytest.raises(vocab.LabelError, match="C:notachord"):
        mirdata_source.to_harte("C:notachord")


def test_collection_in_two_jobs_plus_merge_equals_one_run(homes, tmp_path):
    sources = _sources(homes)
    single = preparation.prepare_dataset(sources, tmp_path / "one", FEATURES,
                                         preparation.PrepareConfig(workers=1, songs_per_shard=1), progress=False)
    for job in (0, 1):
        config = preparation.PrepareConfig(workers=1, songs_per_shard=1, job_index=job, num_jobs=2)
        assert preparation.prepare_dataset(sources, tmp_path / "two", FEATURES, config, progress=False) is None
    merged = preparation.merge_dataset(tmp_path / "two")
    for key in ("splits", "song_sources", "label_histogram"):
        assert merged[key] == single[key]
    assert [(s["label"], s["found"], s["prepared"], s["skipped"]) for s in merged["sources"]] == [
        (s["label"], s["found"], s["prepared"], s["skipped"]) for s in single["sources"]]
    assert sorted(i["reason"].replace("/two/", "/out/") for i in merged["skipped"]) == sorted(
        i["reason"].replace("/one/", "/out/") for i in single["skipped"])


def test_official_split_keeps_a_manifests_splits_and_refuses_a_folder(tmp_path):
    folder = tmp_path / "songs"
    for i in range(3):
        _audio(folder / f"s{i}.wav")
        (folder / f"s{i}.lab").write_text("0 2 C:maj\n2 4 A:min\n")
    (folder / "manifest.csv").write_text("audio,annotation,split\ns0.wav,s0.lab,test\ns1.wav,s1.lab,test\n"
                                         "s2.wav,s2.lab,valid\n")
    config = preparation.PrepareConfig(workers=1, official_split=True)
    info = preparation.prepare_dataset(folder / "manifest.csv", tmp_path / "out", FEATURES, config, progress=False)
    assert {s: v["songs"] for s, v in info["splits"].items()} == {"train": 0, "valid": 1, "test": 2}
    with pytest.raises(ValueError, match="3 song\\(s\\) without a split of their own"):
        preparation.prepare_dataset(folder, tmp_path / "out2", FEATURES, config, progress=False)


def test_an_index_that_is_not_one_is_refused_naming_it(tmp_path):
    index = tmp_path / "index.json"
    index.write_text('{"version": "1.2", "multitracks": {}}')
    with pytest.raises(mirdata_source.MirdataError, match=r"index\.json: not a mirdata index of tracks"):
        mirdata_source.open_dataset(mirdata_source.MirdataSource("beatles", str(tmp_path), index=str(index)))
    index.write_text('{"version": ')
    with pytest.raises(mirdata_source.MirdataError, match=r"index\.json: not a readable mirdata index"):
        mirdata_source.open_dataset(mirdata_source.MirdataSource("beatles", str(tmp_path), index=str(index)))
    with pytest.raises(mirdata_source.MirdataError, match="mirdata knows no collection 'beatle'"):
        mirdata_source.open_dataset(mirdata_source.MirdataSource("beatle", str(tmp_path), index=str(index)))


@pytest.mark.slow
def test_worker_processes_check_audio_checksums_too(homes, tmp_path):
    sources = _sources({"beatles": homes["beatles"]})
    info = preparation.prepare_dataset(sources, tmp_path / "out", FEATURES, preparation.PrepareConfig(workers=2),
                                       progress=False)
    assert info["sources"][0]["skipped"] == {"bad annotation": 1, "checksum": 1, "missing audio": 1}
    assert sorted(info["song_sources"]) == ["beatles/0101", "beatles/0104"]


def test_cli_lists_the_collections_with_chords(capsys):
    assert prepare.main(["--list-mirdata"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "collections with chord annotations in mirdata (versions: default first):"
    guitarset = next(line for line in lines if line.startswith("  guitarset "))
    assert guitarset.split()[1:4] == ["1.1.0", "leadsheet_chords", "+"]
    assert "audio_mic: the instructed chords" in guitarset
    assert any(line.startswith("  beatles      1.2        chords + audio: Isophonics") for line in lines)


def test_an_index_entry_mirdata_cannot_build_a_track_from_is_listed(tmp_path):
    home = tmp_path / "beatles"
    _audio(home / "audio/a.wav")
    index = _write_index(home, "beatles", "1.2", {"0101": _entry(home, {"audio": "audio/a.wav"})})
    inputs, _ = mirdata_source.find_inputs(mirdata_source.MirdataSource("beatles", str(home), index=str(index)),
                                           tmp_path / "labels")
    assert [(s.song_id, s.problem[0]) for s in inputs] == [("beatles/0101", "bad index entry")]
    assert "KeyError('beat')" in inputs[0].problem[1]
