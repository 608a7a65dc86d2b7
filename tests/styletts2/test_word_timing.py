"""Word timing of alignments (tts_zoo_styletts2.aligner.word_timing) against espeak-ng's own word events
(Espeak.synthesize_words): the events, the word rule on hand-made paths, and that a few hundred CTC
steps on a tiny espeak corpus bring the CTC path's word starts much closer to espeak-ng's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.styletts2.reference import REPO
from tests.styletts2.test_align_pretrain import ALIGNER, _train, espeak_corpus  # noqa: F401 (a fixture)
from tts_zoo import registry
from tts_zoo.audio import load_audio
from tts_zoo.data.demo import DEFAULT_SPEAKERS, Espeak
from tts_zoo.data.manifest import read_manifest
from tts_zoo.recipe import load_recipe
from tts_zoo_styletts2.aligner.word_timing import (aligned_paths, frame_start_seconds, phoneme_first_tokens,
                                                   phoneme_starts, summarize, token_start_frames, uniform_path,
                                                   word_first_tokens, word_start_errors, word_starts)
from tts_zoo_styletts2.text.symbols import SPACE_ID, SYMBOLS

SENTENCES = ["The train was late, so we had coffee at the station.", "Total seconds in the duration."]


@pytest.fixture(scope="module")
def espeak():
    e = Espeak()
    yield e
    e.close()


@pytest.fixture(scope="module")
def frontend():
    return registry.build_component({"component": "espeak", "language": "en-us"}, "text_frontend")


def _ids(text: str) -> list[int]:
    return [SYMBOLS.index(c) for c in text]


def test_espeak_word_events_are_ordered_inside_the_audio_and_repeatable(espeak):
    speaker = DEFAULT_SPEAKERS[0]
    wave, words = espeak.synthesize_words(SENTENCES[0], speaker)
    pcm = espeak.synthesize(SENTENCES[0], speaker)
    assert wave.dtype == torch.float32 and wave.shape[0] == -(-len(pcm) * 24000 // 22050)  # ceil: resampled
    assert [w.word for w in words] == "The train was late so we had coffee at the station".split()
    starts = [w.start for w in words]
    assert starts[0] == 0.0 and all(b - a >= 0.05 for a, b in zip(starts, starts[1:]))
    assert starts[-1] < wave.shape[0] / 24000 - 0.2  # "station" takes more than 0.2 s
    # after the comma espeak pauses; "so" starts when the sound comes back
    so = starts[4]
    assert float(wave[int((so - 0.1) * 24000) : int(so * 24000)].abs().max()) < 1e-3
    assert float(wave[int(so * 24000) : int((so + 0.05) * 24000)].abs().max()) > 0.01
    wave2, words2 = espeak.synthesize_words(SENTENCES[0], speaker)  # no state carried between clips
    assert torch.equal(wave, wave2) and words2 == words


def test_synthesize_words_gives_the_demo_corpus_clip(espeak_corpus, espeak):  # noqa: F811
    record = read_manifest(espeak_corpus / "train.jsonl")[0]
    wave, _ = espeak.synthesize_words(record.text, DEFAULT_SPEAKERS[0])
    stored = load_audio(espeak_corpus / record.audio)
    assert stored.shape == wave.shape
    assert float((stored - wave).abs().max()) < 1.5 / 32768  # the corpus stores it as 16-bit PCM


def test_espeak_words_pair_up_with_the_frontends_phoneme_words(espeak, frontend):
    for text in SENTENCES:
        _, words = espeak.synthesize_words(text, DEFAULT_SPEAKERS[0])
        tokens = [0, *frontend.encode(frontend.phonemize(text)), 0]
        assert len(word_first_tokens(tokens)) == len(words)
    # "in the" is one phoneme word (ɪnðə) and one event
    _, words = espeak.synthesize_words(SENTENCES[1], DEFAULT_SPEAKERS[0])
    assert [w.word for w in words] == ["Total", "seconds", "in", "duration"]


def test_espeak_phoneme_events_spell_the_frontends_phonemes_in_time_order(espeak, frontend):
    speaker = DEFAULT_SPEAKERS[0]
    for text in SENTENCES:
        wave, words, phones = espeak.synthesize_timings(text, speaker)
        words_wave, words_alone = espeak.synthesize_words(text, speaker)
        assert torch.equal(wave, words_wave)  # asking for phoneme events changes nothing in the audio
        assert words == words_alone  # nor in the word events
        phonemes = frontend.phonemize(text)
        assert "".join(p.phoneme for p in phones) == "".join(c for c in phonemes if c not in " ,.")
        first = phoneme_first_tokens(phonemes, [p.phoneme for p in phones])
        assert first is not None and len(first) == len(phones)
        starts = [p.start for p in phones]
        assert all(b > a for a, b in zip(starts, starts[1:]))  # every phoneme lasts > 0 ms
        assert 0.0 < starts[0] < 0.1 and starts[-1] < wave.shape[0] / 24000
    # 'The train was late, so …': the comma's pause lies between "late" (its t) and "so"
    _, _, phones = espeak.synthesize_timings(SENTENCES[0], speaker)
    names = [p.phoneme for p in phones]
    s_at = names.index("s")
    assert phones[s_at].start - phones[s_at - 1].start > 0.15


def test_phoneme_rule_maps_espeak_names_to_first_tokens():
    # "ðə tɹˈeɪn , sˌoʊ ." → tokens [0] ð ə ␠ t ɹ ˈ e ɪ n ␠ , ␠ s ˌ o ʊ ␠ . [0]
    phonemes = "ðə tɹˈeɪn , sˌoʊ ."
    first = phoneme_first_tokens(phonemes, ["ð", "ə", "t", "ɹ", "ˈeɪ", "n", "s", "ˌoʊ"])
    assert first == [1, 2, 4, 5, 6, 9, 13, 14]
    assert phoneme_first_tokens(phonemes, ["ð", "ə", "t"]) is None  # phonemes left over
    assert phoneme_first_tokens(phonemes, ["ð", "a"]) is None  # a different spelling
    tokens = [0, *_ids(phonemes), 0]
    path = uniform_path(len(tokens), 2 * len(tokens))  # two frames per token
    assert np.allclose(phoneme_starts(path, first), frame_start_seconds([2 * i for i in first]))


def test_word_rule_skips_separators_and_punctuation_and_keeps_stress_marks():
    # [0] "ðə tɹˈeɪn , ˈɔːl ." [0]
    tokens = [0, *_ids("ðə tɹˈeɪn , ˈɔːl ."), 0]
    assert word_first_tokens(tokens) == [1, 4, 13]
    assert tokens[13] == SYMBOLS.index("ˈ") and tokens[12] == SPACE_ID
    # an opening quote attached to a word is skipped; a run of punctuation alone is no word
    assert word_first_tokens([0, *_ids("“ab ?! cd”"), 0]) == [2, 8]
    assert word_first_tokens([0, 0]) == []


def test_word_starts_on_a_hand_made_path():
    tokens = [0, *_ids("ab cd"), 0]  # 7 tokens; words start at tokens 1 and 4
    durations = [10, 3, 2, 1, 4, 5, 9]  # frames per token: 34 frames
    path = torch.zeros(7, 34)
    ends = np.cumsum(durations)
    for t, (start, end) in enumerate(zip(ends - durations, ends)):
        path[t, start:end] = 1
    assert token_start_frames(path).tolist() == [0, 10, 13, 15, 16, 20, 25]
    # word starts at frames 10 and 16: (f·600 − 150 − 5000) / 24000 s
    assert np.allclose(word_starts(path, tokens), [(6000 - 5150) / 24000, (9600 - 5150) / 24000])
    # the space rule: the token before each word (the pad 0 at frame 0, the space at frame 15)
    assert np.allclose(word_starts(path, tokens, "space"), [-5150 / 24000, (9000 - 5150) / 24000])
    with pytest.raises(ValueError, match="rule"):
        word_starts(path, tokens, "middle")  # type: ignore[arg-type]
    assert np.allclose(frame_start_seconds([0, 1], pad_samples=0), [-150 / 24000, 450 / 24000])
    path[2] = 0
    with pytest.raises(ValueError, match=r"token\(s\) \[2\] have no frame"):
        token_start_frames(path)


def test_uniform_path_spreads_frames_evenly():
    path = uniform_path(3, 8)
    assert path.sum(0).tolist() == [1.0] * 8  # every frame to one token
    assert path.sum(1).tolist() == [3.0, 3.0, 2.0]  # floor(t·8/3) boundaries: 0, 3, 6
    assert token_start_frames(path).tolist() == [0, 3, 6]
    with pytest.raises(ValueError, match="cannot cover"):
        uniform_path(5, 4)


def test_errors_and_summary_numbers():
    assert word_start_errors([0.0, 1.0], [0.0, 1.0, 2.0]) is None  # counts differ: not scored
    e = word_start_errors([9.0, 0.13, 0.5, 1.02, 2.0], [0.0, 0.1, 0.6, 1.0, 1.7])
    assert np.allclose(e, [0.03, -0.1, 0.02, 0.3])  # the first word is left out
    s = summarize(e)
    assert s.words == 4 and s.median_ms == pytest.approx(65.0) and s.mean_ms == pytest.approx(112.5)
    assert s.bias_ms == pytest.approx(62.5) and s.within_50 == 0.5 and s.within_100 == 0.75
    with pytest.raises(ValueError):
        summarize([])


def test_ctc_training_brings_word_starts_towards_espeaks(espeak_corpus, espeak, frontend):  # noqa: F811
    """150 CTC-only steps (lr 0.003) on the 8-clip corpus bring the CTC path's word starts towards
    espeak-ng's. How far depends on the initial draw: over five seeds the tiny aligner locked onto
    the right path once (median error 311 → 25 ms) and otherwise settled at 150–230 ms (from 275–362;
    300 steps or lr 0.01 did not get it out): median ×0.07–0.65, mean ×0.08–0.57, +0.17–0.86 of the
    words within 100 ms. The bounds below hold for all five. (The demo's real pretraining runs for
    thousands of steps on 800 clips: 11 ms, benchmarks/alignment.py.)"""
    torch.set_num_threads(1)
    records = read_manifest(espeak_corpus / "train.jsonl")
    clips = []
    for r in records:  # the corpus's clips again, with espeak's word times; tokens as the dataset makes them
        wave, words = espeak.synthesize_words(r.text, DEFAULT_SPEAKERS[0])
        clips.append((wave, [0, *frontend.encode(r.phonemes), 0], [w.start for w in words]))

    def score(model):
        model.eval()
        errors: dict[str, list[np.ndarray]] = {}
        for wave, tokens, reference in clips:
            for source, path in aligned_paths(model, wave, tokens, ("ctc", "attention")).items():
                errors.setdefault(source, []).append(word_start_errors(word_starts(path, tokens), reference))
        return {k: summarize(np.concatenate(v)) for k, v in errors.items()}

    torch.manual_seed(0)
    untrained = registry.build(load_recipe(REPO / "recipes/demo.yaml", [
        f"data.train={espeak_corpus}/train.jsonl", "data.val=null", ALIGNER]))
    before = score(untrained)
    trained, *_ = _train(espeak_corpus, 150, lr=0.003, batch_size=8, ctc_warmup_epochs=1000)  # CTC only
    after = score(trained)
    print({k: (round(before[k].median_ms), round(after[k].median_ms), round(before[k].mean_ms), round(after[k].mean_ms),
               before[k].within_100, after[k].within_100) for k in before})
    assert before["ctc"].words == after["ctc"].words == after["attention"].words >= 60
    assert after["uniform"] == before["uniform"]  # the baseline does not depend on the model
    assert after["ctc"].median_ms < 0.75 * before["ctc"].median_ms
    assert after["ctc"].mean_ms < 0.65 * before["ctc"].mean_ms
    assert after["ctc"].within_100 > before["ctc"].within_100 + 0.1
