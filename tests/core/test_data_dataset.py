"""tts_zoo.data: the dataset (mel parity with tts_zoo.audio.log_mel, tokens, reference clip, OOD text,
skipping bad audio), the collater and a DataLoader over the bucketing sampler."""

from __future__ import annotations

import logging
import math
import os

import pytest
import soundfile
import torch
import torch.nn.functional as F

from tts_zoo.audio import load_audio, log_mel
from tts_zoo.data.batching import LengthBucketSampler
from tts_zoo.data.collate import Batch, Collater
from tts_zoo.data.dataset import Sample, SpeechDataset, read_ood_texts
from tts_zoo.data.manifest import Utterance, write_list
from tts_zoo.data.prepare import prepare_corpus
from tests.core.test_data_prepare import FakeFrontend, write_wave

LONG = "this is a rather long out of distribution sentence with many letters"  # >= 50 characters


@pytest.fixture
def corpus(tmp_path):
    """Five good clips of two speakers (one at 16 kHz, one long enough to crop) and three bad ones."""
    torch.set_num_threads(1)
    spec = [("a0", "a", 1.0, 24000), ("a1", "a", 2.3, 24000), ("a2", "a", 0.6, 16000),
            ("b0", "b", 0.8, 24000), ("b1", "b", 1.4, 22050)]
    recs = []
    for uid, spk, sec, sr in spec:
        write_wave(tmp_path / f"{uid}.wav", sec, sr, freq=150 + 40 * len(recs))
        recs.append(Utterance(uid, str(tmp_path / f"{uid}.wav"), uid, f"{uid} said hello.", spk, sec, sr))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(300))
    write_wave(tmp_path / "short.wav", 0.01)
    bad = [Utterance("corrupt", str(tmp_path / "corrupt.wav"), "", "corrupt.", "a", 1.0, 24000),
           Utterance("short", str(tmp_path / "short.wav"), "", "short.", "b", 0.01, 24000),
           Utterance("missing", str(tmp_path / "missing.wav"), "", "missing.", "a", 1.0, 24000)]
    return recs, bad


def expected_mel(path: str) -> torch.Tensor:
    wave = F.pad(load_audio(path, 24000), (5000, 5000))
    mel = log_mel(wave)
    return mel[:, : mel.shape[-1] // 2 * 2]


def test_item_matches_reference_preprocessing(corpus):
    recs, _ = corpus
    fe = FakeFrontend()
    ds = SpeechDataset(recs, fe, ood_texts=[LONG, "too short"], seed=1)
    assert ds.speakers == {"a": 0, "b": 1}
    for i, r in enumerate(recs):
        s = ds[i]
        assert isinstance(s, Sample) and s.path == r.audio
        wave = load_audio(r.audio, 24000)
        assert torch.equal(s.wave, F.pad(wave, (5000, 5000)))  # 5000 samples of silence each side
        frames = soundfile.info(r.audio).frames  # 16 and 22.05 kHz resampled to 24 kHz:
        assert s.wave.shape[-1] == math.ceil(frames * 24000 / r.sample_rate) + 10000
        assert torch.equal(s.mel, expected_mel(r.audio))  # exactly tts_zoo.audio.log_mel, even frame count
        assert s.mel.shape[-1] % 2 == 0 and s.mel.shape[0] == 80
        assert s.tokens.tolist() == [0, *fe.encode(r.phonemes), 0]
        assert s.speaker == s.ref_speaker == ds.speakers[r.speaker]  # reference clip of the same speaker
        assert s.ood_tokens.tolist() == [0, *fe.encode(LONG), 0]  # the only OOD text of >= 50 characters
    # The long clip's mel (2.3 s + padding = 225 frames) is cropped to 192 frames when drawn as reference.
    widths = set()
    for epoch in range(12):  # the draws change from epoch to epoch
        ds.set_epoch(epoch)
        widths |= {ds[1].ref_mel.shape[-1], ds[0].ref_mel.shape[-1]}
    assert 192 in widths and max(widths) == 192
    ref = ds[3].ref_mel  # speaker b: b0 or b1, uncropped (both under 192 frames)
    assert any(torch.equal(ref, log_mel(F.pad(load_audio(r.audio), (5000, 5000)))) for r in recs[3:])


def test_reference_crop_is_a_window_of_the_same_speakers_mel(corpus):
    recs, _ = corpus
    ds = SpeechDataset(recs[:2], FakeFrontend(), ref_frames=64)
    full = {r.id: log_mel(F.pad(load_audio(r.audio), (5000, 5000))) for r in recs[:2]}
    for epoch in range(6):
        ds.set_epoch(epoch)
        ref = ds[0].ref_mel
        assert ref.shape == (80, 64)
        assert any(torch.equal(ref, m[:, k : k + 64]) for m in full.values() for k in range(m.shape[-1] - 63))


def _as_is(sample: Sample) -> Sample:
    return sample


def test_an_items_draws_depend_on_seed_epoch_and_index_only(corpus):
    """Exact resume: an item read again — in another order, by a loader worker, in a new process —
    draws the same reference clip and OOD text; the next epoch draws anew."""
    recs, _ = corpus
    texts = [LONG, LONG + " again", LONG + " once more", LONG + " and so on"]
    ds = SpeechDataset(recs, FakeFrontend(), ood_texts=texts, seed=3)

    def draws(samples):
        return [(s.ref_mel, s.ood_tokens.tolist()) for s in samples]

    def same(a, b):
        return all(torch.equal(ra, rb) and oa == ob for (ra, oa), (rb, ob) in zip(a, b))

    ds.set_epoch(4)
    first = draws(ds[i] for i in range(len(ds)))
    assert same(first, draws(ds[i] for i in reversed(range(len(ds))))[::-1])
    workers = torch.utils.data.DataLoader(ds, batch_size=None, sampler=range(len(ds)), num_workers=2, collate_fn=_as_is)
    assert same(first, draws(workers))
    again = SpeechDataset(recs, FakeFrontend(), ood_texts=texts, seed=3)
    again.set_epoch(4)
    assert same(first, draws(again[i] for i in range(len(ds))))
    ds.set_epoch(5)
    assert not same(first, draws(ds[i] for i in range(len(ds))))


def test_cache_audio_reads_each_file_once_and_changes_nothing(corpus, monkeypatch):
    """cache_audio: every epoch's items equal the uncached dataset's (the same draws too); once read,
    no file is decoded again in later epochs, whether as an item or as a reference; a bad file stays
    skipped."""
    import tts_zoo.data.dataset as dataset_module

    recs, bad = corpus
    texts = [LONG, LONG + " again"]
    reads: list[str] = []
    real_load = dataset_module.load_audio
    monkeypatch.setattr(dataset_module, "load_audio", lambda path, sr: reads.append(path) or real_load(path, sr))
    cached = SpeechDataset(recs + bad[:1], FakeFrontend(), ood_texts=texts, seed=2, cache_audio=True)
    plain = SpeechDataset(recs + bad[:1], FakeFrontend(), ood_texts=texts, seed=2)
    for epoch in range(3):
        cached.set_epoch(epoch)
        plain.set_epoch(epoch)
        for i in range(len(recs) + 1):
            a, b = cached[i], plain[i]
            assert a.path == b.path and a.ood_tokens.tolist() == b.ood_tokens.tolist()
            assert torch.equal(a.mel, b.mel) and torch.equal(a.wave, b.wave) and torch.equal(a.ref_mel, b.ref_mel)
    reads.clear()
    for epoch in range(3, 5):
        cached.set_epoch(epoch)
        for i in range(len(recs)):
            cached[i]
    assert reads == [], f"cached dataset read {len(reads)} files again"
    assert len(cached.skipped) == 1 and bad[0].audio in cached.skipped


def test_bad_audio_is_skipped_with_counted_warnings(corpus, caplog):
    recs, bad = corpus
    ds = SpeechDataset(recs + bad, FakeFrontend(), seed=0)
    with caplog.at_level(logging.WARNING, logger="tts_zoo.data.dataset"):
        samples = [ds[i] for i in range(len(ds))]  # never raises
    good = {r.audio for r in recs}
    assert all(s.path in good for s in samples)
    assert set(ds.skipped) == {b.audio for b in bad}
    assert "too short" in ds.skipped[bad[1].audio] and "no such audio file" in ds.skipped[bad[2].audio]
    assert len([r for r in caplog.records if "skipping" in r.message]) == 3
    assert "(3 skipped so far)" in caplog.records[-1].message
    only_bad = SpeechDataset(bad, FakeFrontend())
    with pytest.raises(RuntimeError, match="no usable audio left"):
        only_bad[0]


def test_collater_sorts_pads_and_guards_oov(corpus):
    recs, _ = corpus
    ds = SpeechDataset(recs, FakeFrontend(), ood_texts=[LONG])
    samples = [ds[i] for i in (0, 1, 3)]
    n_symbols = 20  # smaller than the fake table (31): higher ids are dropped
    batch = Collater(n_symbols=n_symbols)(samples)
    assert isinstance(batch, Batch) and len(batch[:8]) == 8
    order = sorted(samples, key=lambda s: -s.mel.shape[-1])
    assert batch.output_lengths.tolist() == [s.mel.shape[-1] for s in order]  # longest first
    assert batch.mels.shape == (3, 80, order[0].mel.shape[-1]) and batch.ref_mels.shape == (3, 80, 192)
    for b, s in enumerate(order):
        n = s.mel.shape[-1]
        assert torch.equal(batch.mels[b, :, :n], s.mel) and not batch.mels[b, :, n:].any()
        kept = s.tokens[s.tokens < n_symbols]
        assert batch.input_lengths[b] == len(kept) and torch.equal(batch.texts[b, : len(kept)], kept)
        assert not batch.texts[b, len(kept) :].any()
        assert torch.equal(batch.ref_mels[b, :, : s.ref_mel.shape[-1]], s.ref_mel)
        assert torch.equal(batch.waves[b], s.wave) and batch.paths[b] == s.path
        assert batch.speakers[b] == s.speaker and batch.ref_speakers[b] == s.ref_speaker
    dropped = sum(int((s.tokens >= n_symbols).sum() + (s.ood_tokens >= n_symbols).sum()) for s in samples)
    assert dropped > 0
    collater = Collater(n_symbols=n_symbols)
    collater(samples)
    assert collater.dropped_tokens == dropped
    assert batch.to("cpu").mels is not None


def test_dataloader_over_bucketing_sampler(corpus):
    recs, bad = corpus
    ds = SpeechDataset(recs + bad, FakeFrontend(), ood_texts=[LONG])
    sampler = LengthBucketSampler(ds.lengths, batch_size=3, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=Collater(), num_workers=0)
    batches = list(loader)
    assert len(batches) == len(sampler) == 3
    assert sum(len(b.paths) for b in batches) == len(ds)  # bad items replaced, never dropped
    assert all(b.output_lengths.tolist() == sorted(b.output_lengths.tolist(), reverse=True) for b in batches)


def test_from_reference_list_and_ood_file(tmp_path, corpus):
    recs, _ = corpus
    write_list(tmp_path / "train_list.txt", recs, {"a": 3, "b": 7})
    (tmp_path / "OOD_texts.txt").write_text(f"x.wav|{LONG}|1\ny.wav|short|0\n", encoding="utf-8")
    assert read_ood_texts(tmp_path / "OOD_texts.txt") == [LONG, "short"]
    ds = SpeechDataset.from_list(tmp_path / "train_list.txt", FakeFrontend(), ood_file=tmp_path / "OOD_texts.txt")
    s = ds[3]
    assert s.speaker == 7 and s.path == recs[3].audio and torch.equal(s.mel, expected_mel(recs[3].audio))


# ----------------------------------------------------------------------------- the demo corpus


def test_demo_corpus_prepares_and_loads(tmp_path):
    espeak = pytest.importorskip("tts_zoo_styletts2.text.espeak")
    fe = espeak.EspeakFrontend()
    out = tmp_path / "demo"
    report = prepare_corpus("demo", None, out, fe, workers=2, seed=0, demo_options={"n_utterances": 24})
    assert report.utterances == 24 and report.val >= 1 and len(report.speakers) == 8
    assert report.resampled == {} and report.oov_symbols == {} and not report.missing + report.unreadable
    assert report.frontend["espeak_ng"].startswith("1.5")

    ds = SpeechDataset.from_manifest(out / "train.jsonl", fe)
    assert len(ds) == report.train and set(ds.speakers) == set(report.speakers)
    sampler = LengthBucketSampler(ds.lengths, batch_size=4, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=Collater(len(fe.symbols)))
    batch = next(iter(loader))
    for b, path in enumerate(batch.paths):
        n = int(batch.output_lengths[b])
        assert torch.equal(batch.mels[b, :, :n], expected_mel(path))
        assert torch.equal(batch.waves[b], F.pad(load_audio(path), (5000, 5000)))
        tokens = batch.texts[b, : batch.input_lengths[b]].tolist()
        record = next(r for r in ds.records if r.audio == path)
        assert tokens == [0, *fe.encode(record.phonemes), 0] and 0 not in tokens[1:-1]


def test_demo_is_deterministic_and_cached(tmp_path):
    pytest.importorskip("espeakng_loader")
    from tts_zoo.data.demo import DEFAULT_SPEAKERS, build_demo, demo_sentences

    assert demo_sentences(40, seed=5) == demo_sentences(40, seed=5) != demo_sentences(40, seed=6)
    assert all(s[0].isupper() and s[-1] in ".!?" and "_" not in s for s in demo_sentences(200))
    one = build_demo(tmp_path / "one", n_utterances=16, workers=1, seed=2)
    two = build_demo(tmp_path / "two", n_utterances=16, workers=2, seed=2)
    assert [(i.id, i.text, i.speaker) for i in one] == [(i.id, i.text, i.speaker) for i in two]
    assert {i.speaker for i in one} == {s.name for s in DEFAULT_SPEAKERS}  # balanced over the 8 voices
    for a, b in zip(one, two):  # the same bytes whatever the number of workers
        assert a.audio.read_bytes() == b.audio.read_bytes()
    wave = load_audio(one[0].audio, 24000)
    assert wave.abs().max() > 0.05 and wave.shape[-1] > 24000 // 2
    assert soundfile.info(str(one[0].audio)).samplerate == 24000
    stamps = [i.audio.stat().st_mtime_ns for i in one]
    again = build_demo(tmp_path / "one", n_utterances=16, workers=1, seed=2)  # kept, not redone
    assert [i.audio.stat().st_mtime_ns for i in again] == stamps


def test_lengths_from_manifest_or_audio_header(tmp_path, corpus):
    recs, _ = corpus
    ds = SpeechDataset(recs, FakeFrontend())
    for i, r in enumerate(recs):
        if r.sample_rate == 24000:  # the estimate is the mel's frame count (before the even cut)
            assert ds.lengths[i] // 2 * 2 == ds[i].mel.shape[-1]
    write_list(tmp_path / "list.txt", recs, {"a": 0, "b": 1})
    from_list = SpeechDataset.from_list(tmp_path / "list.txt", FakeFrontend())  # durations unknown: read headers
    assert from_list.lengths == ds.lengths
