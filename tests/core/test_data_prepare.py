"""tts_zoo.data: corpus readers, manifests and ``prepare`` (report, skipping, caching, atomic writes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tts_zoo.data import manifest as mf
from tts_zoo.data.corpora import read_corpus
from tts_zoo.data.prepare import PrepareError, prepare_corpus, split_train_val
from tts_zoo.interfaces import TextFrontend

# ----------------------------------------------------------------------------- helpers (shared)


class FakeFrontend(TextFrontend):
    """Lower-cases the text; symbols are '$', space, a few marks and the letters except 'q'."""

    def __init__(self, tag: str = "v1"):
        self.symbols = ["$", " ", ".", ",", "?", "!"] + [c for c in "abcdefghijklmnopqrstuvwxyz" if c != "q"]
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.tag = tag
        self.calls = 0

    def phonemize(self, text: str) -> str:
        self.calls += 1
        return text.lower()

    def encode(self, phonemes: str) -> list[int]:
        return [self.index[c] for c in phonemes if c in self.index]

    def describe(self) -> dict:
        return {"tag": self.tag}


def write_wave(path: Path, seconds: float, sr: int = 24000, freq: float = 220.0, fmt: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    soundfile.write(str(path), 0.3 * np.sin(2 * np.pi * freq * t), sr, subtype="PCM_16", format=fmt)
    return path


SENTENCES = ["Hello world.", "The quick brown fox.", "Speech is sound, made by people!", "A fourth line here."]


def ljspeech_tree(root: Path, sr: int = 22050) -> Path:
    lines = []
    for i, text in enumerate(SENTENCES):
        uid = f"LJ001-{i:04d}"
        write_wave(root / "wavs" / f"{uid}.wav", 0.5 + 0.5 * i, sr)
        lines.append(f"{uid}|{text.upper()} raw|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------- corpora → prepare


def test_ljspeech_prepare_writes_manifests_lists_and_report(tmp_path):
    src = ljspeech_tree(tmp_path / "LJSpeech-1.1")
    out = tmp_path / "out"
    report = prepare_corpus("ljspeech", src, out, FakeFrontend(), workers=1, val_fraction=0.25)

    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl")
    assert (report.train, report.val) == (len(train), len(val)) == (3, 1)
    rows = {r["id"]: r for r in train + val}
    assert set(rows) == {f"LJ001-{i:04d}" for i in range(4)}
    r = rows["LJ001-0002"]
    assert r["text"] == SENTENCES[2]  # the normalized column
    assert r["phonemes"] == SENTENCES[2].lower()
    assert (r["speaker"], r["sample_rate"], r["duration"]) == ("ljspeech", 22050, 1.5)
    assert Path(r["audio"]) == (src / "wavs" / "LJ001-0002.wav").resolve()

    assert report.speakers == {"ljspeech": 4}
    assert report.hours == pytest.approx((0.5 + 1.0 + 1.5 + 2.0) / 3600)
    assert report.histogram["0-1 s"] == 1 and report.histogram["1-2 s"] == 2 and report.histogram["2-3 s"] == 1
    assert sum(report.histogram.values()) == 4
    assert report.resampled == {"22050": 4}
    assert report.missing == report.unreadable == report.empty_texts == []
    assert report.oov_symbols == {"q": 1}  # "quick": 'q' is not in the fake table

    # The reference's lists: path|phonemes|speaker id, the same split.
    lines = (out / "train_list.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(line.endswith("|0") and line.count("|") == 2 for line in lines)
    assert {line.split("|")[1] for line in lines} == {row["phonemes"] for row in train}
    assert json.loads((out / "speakers.json").read_text()) == {"ljspeech": 0}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frontend"]["tag"] == "v1" and meta["corpus"] == "ljspeech"
    assert json.loads((out / "report.json").read_text())["utterances"] == 4
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.tmp"))  # nothing half-written left


def test_libritts_and_vctk_trees(tmp_path):
    lib = tmp_path / "LibriTTS" / "train-clean-100"
    for spk, chap, n in (("19", "198", 2), ("26", "495", 3)):
        for k in range(n):
            utt = f"{spk}_{chap}_000{k}_00000{k}"
            write_wave(lib / spk / chap / f"{utt}.wav", 0.4)
            (lib / spk / chap / f"{utt}.normalized.txt").write_text(f"Sentence {k} of {spk}.", encoding="utf-8")
            (lib / spk / chap / f"{utt}.original.txt").write_text("ignored", encoding="utf-8")
    report = prepare_corpus("libritts", tmp_path / "LibriTTS", tmp_path / "lt", FakeFrontend(), workers=1)
    assert report.speakers == {"19": 2, "26": 3} and report.utterances == 5 and report.resampled == {}
    assert json.loads((tmp_path / "lt" / "speakers.json").read_text()) == {"19": 0, "26": 1}
    ids = {line.split("|")[2] for f in ("train_list.txt", "val_list.txt")
           for line in (tmp_path / "lt" / f).read_text().splitlines()}
    assert ids == {"0", "1"}

    vctk = tmp_path / "VCTK"
    for spk in ("p225", "p226"):
        for k in (1, 2):
            (vctk / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (vctk / "txt" / spk / f"{spk}_00{k}.txt").write_text(f"Please call Stella {k}.\n", encoding="utf-8")
            write_wave(vctk / "wav48_silence_trimmed" / spk / f"{spk}_00{k}_mic1.flac", 0.6, 48000, fmt="FLAC")
            write_wave(vctk / "wav48_silence_trimmed" / spk / f"{spk}_00{k}_mic2.flac", 0.6, 48000, fmt="FLAC")
    items = read_corpus("vctk", vctk)
    assert [(i.id, i.speaker, i.audio.name) for i in items][:2] == [
        ("p225_001", "p225", "p225_001_mic1.flac"), ("p225_002", "p225", "p225_002_mic1.flac")]
    report = prepare_corpus("vctk", vctk, tmp_path / "vc", FakeFrontend(), workers=1)
    assert report.speakers == {"p225": 2, "p226": 2} and report.resampled == {"48000": 4}
    rows = read_jsonl(tmp_path / "vc" / "train.jsonl") + read_jsonl(tmp_path / "vc" / "val.jsonl")
    assert {r["phonemes"] for r in rows} == {"please call stella 1.", "please call stella 2."}
    assert all(r["duration"] == 0.6 and r["sample_rate"] == 48000 for r in rows)


def test_bad_inputs_are_skipped_and_listed(tmp_path):
    src = tmp_path / "corpus"
    write_wave(src / "good.wav", 1.0)
    write_wave(src / "low.wav", 1.0, 16000)
    (src / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + os.urandom(200))
    write_wave(src / "silent.wav", 0.0)  # a valid header with 0 samples
    rows = ["audio|text|speaker", "good.wav|Good one.|a", "low.wav|Low rate file.|b", "corrupt.wav|Corrupt.|a",
            "missing.wav|Not there.|a", "silent.wav|Empty audio.|b", "good2.wav|   |a"]
    (src / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    write_wave(src / "good2.wav", 1.0)

    report = prepare_corpus("csv", src, tmp_path / "out", FakeFrontend(), workers=1, val_fraction=0.0)
    assert report.utterances == 2 and report.speakers == {"a": 1, "b": 1}
    assert report.missing == [str(src / "missing.wav")]
    assert [u.split(":")[0] for u in report.unreadable] == [str(src / "corrupt.wav"), str(src / "silent.wav")]
    assert "empty audio" in report.unreadable[1]
    assert report.empty_texts == ["good2"]
    assert report.resampled == {"16000": 1}
    rows = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [(r["id"], r["sample_rate"]) for r in rows] == [("good", 24000), ("low", 16000)]
    assert (tmp_path / "out" / "val.jsonl").read_text() == ""

    # Nothing usable left: fatal, with the report written and a message that says why.
    (src / "metadata.csv").write_text("corrupt.wav|Corrupt.\nmissing.wav|Gone.\n", encoding="utf-8")
    with pytest.raises(PrepareError, match="no usable utterances.*1 missing, 1 unreadable"):
        prepare_corpus("csv", src, tmp_path / "none", FakeFrontend(), workers=1)
    assert json.loads((tmp_path / "none" / "report.json").read_text())["missing"] == [str(src / "missing.wav")]
    assert not (tmp_path / "none" / "train.jsonl").exists()


def test_rerun_does_only_new_work(tmp_path):
    src = ljspeech_tree(tmp_path / "lj")
    out = tmp_path / "out"
    fe = FakeFrontend()
    first = prepare_corpus("ljspeech", src, out, fe, workers=1)
    assert (first.probed, first.phonemized, fe.calls) == (4, 4, 4)
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}

    again = prepare_corpus("ljspeech", src, out, fe, workers=1)
    assert (again.probed, again.probed_cached, again.phonemized, again.phonemized_cached) == (0, 4, 0, 4)
    assert fe.calls == 4  # nothing phonemized again
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before

    # One new utterance and one re-recorded file: only those are probed; only the new text phonemized.
    write_wave(src / "wavs" / "LJ001-0004.wav", 0.7, 22050)
    write_wave(src / "wavs" / "LJ001-0000.wav", 0.9, 22050)
    with open(src / "metadata.csv", "a", encoding="utf-8") as f:
        f.write("LJ001-0004|x|Brand new sentence.\n")
    third = prepare_corpus("ljspeech", src, out, fe, workers=1)
    assert (third.probed, third.phonemized, fe.calls) == (2, 1, 5)
    rows = {r["id"]: r for f in ("train.jsonl", "val.jsonl") for r in read_jsonl(out / f)}
    assert rows["LJ001-0000"]["duration"] == 0.9 and len(rows) == 5

    # Another frontend (describe() differs) does not reuse the phonemes.
    other = FakeFrontend("v2")
    assert prepare_corpus("ljspeech", src, out, other, workers=1).phonemized == 5


def test_parallel_prepare_equals_serial(tmp_path):
    src = tmp_path / "many"
    rows = []
    for i in range(80):  # > 1 phonemizer chunk, so the process pool is used
        write_wave(src / f"u{i:03d}.wav", 0.2 + 0.01 * i, freq=100 + i)
        rows.append(f"u{i:03d}.wav|Sentence number {i} is here.|s{i % 3}")
    (src / "list.csv").write_text("\n".join(rows), encoding="utf-8")
    serial = prepare_corpus("csv", src / "list.csv", tmp_path / "s", FakeFrontend(), workers=1)
    parallel = prepare_corpus("csv", src / "list.csv", tmp_path / "p", FakeFrontend(), workers=2)
    assert serial.utterances == parallel.utterances == 80 and serial.val >= 1
    for name in ("train.jsonl", "val.jsonl", "train_list.txt", "speakers.json"):
        assert (tmp_path / "s" / name).read_text() == (tmp_path / "p" / name).read_text()


# ----------------------------------------------------------------------------- manifest files


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    mf.atomic_write_text(path, "old\n")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(mf.os, "replace", fail)
    with pytest.raises(OSError):
        mf.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_manifest_roundtrip_relative_paths_and_reference_list(tmp_path):
    recs = [mf.Utterance("a", str(tmp_path / "wavs" / "a.wav"), "Hi.", "hˈaɪ .", "s1", 1.25, 24000),
            mf.Utterance("b", "/elsewhere/b.wav", "Yo.", "jˈoʊ .", "s0", 2.0, 22050)]
    mf.write_manifest(tmp_path / "train.jsonl", recs)
    stored = read_jsonl(tmp_path / "train.jsonl")
    assert [s["audio"] for s in stored] == ["wavs/a.wav", "/elsewhere/b.wav"]
    assert mf.read_manifest(tmp_path / "train.jsonl") == recs
    speakers = mf.speaker_ids(recs)
    assert speakers == {"s0": 0, "s1": 1}
    mf.write_list(tmp_path / "train_list.txt", recs, speakers)
    assert (tmp_path / "train_list.txt").read_text(encoding="utf-8") == "wavs/a.wav|hˈaɪ .|1\n/elsewhere/b.wav|jˈoʊ .|0\n"
    back = mf.read_list(tmp_path / "train_list.txt")
    assert [(r.audio, r.phonemes, r.speaker) for r in back] == [
        (str(tmp_path / "wavs" / "a.wav"), "hˈaɪ .", "1"), ("/elsewhere/b.wav", "jˈoʊ .", "0")]


def test_split_is_deterministic_and_stable():
    recs = [mf.Utterance(f"u{i}", "x.wav", "t", "t", "s", 1.0, 24000) for i in range(400)]
    train, val = split_train_val(recs, 0.1, seed=3)
    assert (train, val) == split_train_val(recs, 0.1, seed=3)
    assert 20 <= len(val) <= 60 and len(train) + len(val) == 400
    grown_train, grown_val = split_train_val(recs + [mf.Utterance("new", "x.wav", "t", "t", "s", 1.0, 24000)], 0.1, 3)
    assert {r.id for r in val} <= {r.id for r in grown_val}  # adding data does not move old items
    assert split_train_val(recs[:2], 0.01)[1] and split_train_val(recs[:1], 0.5)[0] == recs[:1]


# ----------------------------------------------------------------------------- the CLI command


def test_cli_prepare_with_registered_frontend(tmp_path, capsys):
    pytest.importorskip("tts_zoo_styletts2.text.phonemes")
    from tts_zoo.cli import main

    src = tmp_path / "c"
    write_wave(src / "a.wav", 0.5)
    write_wave(src / "b.wav", 0.5)
    (src / "metadata.csv").write_text("a.wav|hˈaɪ ðˈɛɹ .|x\nb.wav|ɡˈʊd bˈaɪ .|y\n", encoding="utf-8")
    main(["prepare", "csv", str(src), "--out", str(tmp_path / "o"), "--frontend", "phonemes", "-q", "-j", "1"])
    printed = capsys.readouterr().out
    assert "utterances" in printed and "2 (train 1, val 1)" in printed
    rows = read_jsonl(tmp_path / "o" / "train.jsonl") + read_jsonl(tmp_path / "o" / "val.jsonl")
    assert sorted(r["phonemes"] for r in rows) == ["hˈaɪ ðˈɛɹ .", "ɡˈʊd bˈaɪ ."]
