"""Importing the reference checkpoints with ``tts-zoo import-styletts2`` and synthesizing with
``tts-zoo synthesize`` reproduces the reference notebook's waveform (README section 6, tolerances of
section 9.3); long text is chunked, batched and style-carried; bad input is one clear error."""

import random

import numpy as np
import pytest
import soundfile
import torch

from tts_zoo.audio import log_mel
from tts_zoo.checkpoint import load_model
from tts_zoo.cli import main
from tts_zoo.synthesize import Synthesizer
from tts_zoo.text_chunks import split_sentences
import tts_zoo_styletts2.decoders.base as decoder_base
from tts_zoo_styletts2 import official
from tts_zoo_styletts2.model import StyleTTS2
from tests.styletts2.reference import FIXTURES, assert_close

_IMPORTED = {}


def cli(capsys, *argv):
    """Run ``tts-zoo ARGV`` in this process → (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def imported(fixture_set, tmp_path_factory, capsys):
    """The fixture set's stage-2 checkpoint imported once per test session: (fixture set, model dir, report)."""
    if fixture_set.name not in _IMPORTED:
        out = tmp_path_factory.mktemp("models") / fixture_set.name
        code, stdout, err = cli(capsys, "import-styletts2", "--config", FIXTURES / f"{fixture_set.name}.yml",
                                "--checkpoint", FIXTURES / fixture_set.name / "epoch_2nd_00003.pth", "--out", out)
        assert code == 0, err
        _IMPORTED[fixture_set.name] = (out, stdout)
    return (fixture_set, *_IMPORTED[fixture_set.name])


def test_import_reports_every_module_and_keeps_an_inference_model(imported):
    fs, path, report = imported
    lines = dict(line.split(None, 1) for line in report.strip().splitlines()[:-1])
    assert lines == {**{m: "loaded" for m in list(official.MODULE_MAP)[:8]},
                     **{m: "dropped (training only)" for m in ("text_aligner", "pitch_extractor", "mpd", "msd", "wd")}}
    model = load_model(path, for_inference=False)  # nothing of the training-only modules was stored
    assert all(getattr(model, m) is None for m in model.TRAINING_ONLY)
    state = fs.stage2_state("decoder")
    own = model.decoder.state_dict()
    assert own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in own)


def test_synthesize_command_reproduces_the_reference_waveform(imported, tmp_path, capsys):
    fs, path, _ = imported
    fx, inf, seeds = fs.fx, fs.fx["infer_fixed"], fs.fx["meta"]["seeds"]
    np.save(tmp_path / "durations.npy", inf["pred_dur"].numpy())
    args = ["synthesize", "--model", path, "--phonemes", fx["meta"]["phonemes"], "--seed", seeds["sampler"],
            "--decoder-seed", seeds["decoder"], "--durations", tmp_path / "durations.npy", "--out", tmp_path / "out.wav",
            "--dump", tmp_path / "dump", "--device", "cpu"]
    if fs.multispeaker:  # the reference voice from the recording (compute_style: trim, mel, both encoders)
        soundfile.write(tmp_path / "ref.wav", fx["ref_wave"].numpy(), 24000, subtype="FLOAT")
        args += ["--reference", tmp_path / "ref.wav", "--save-voice", tmp_path / "voice.npy"]
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    tokens = np.load(tmp_path / "dump" / "chunk_000_tokens.npy")
    assert tokens.tolist() == inf["tokens"][0].tolist()
    wave, rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    expected = inf["out"].flatten()
    expected = expected[: len(expected) - inf["wav_trim_samples"]]  # the LibriTTS notebook cuts 50 samples
    assert rate == 24000
    # README 9.3: HiFi-GAN matches to float32 noise; iSTFTNet only with identical ops, single-threaded.
    assert_close(torch.from_numpy(wave), expected, 1e-4 if fs.model_params["decoder"]["type"] == "hifigan" else 1e-3, "waveform")
    assert_close(torch.from_numpy(np.load(tmp_path / "dump" / "chunk_000_f0.npy")), inf["F0_pred"][0], 2e-5, "F0")
    assert_close(torch.from_numpy(np.load(tmp_path / "dump" / "chunk_000_style.npy")),
                 torch.cat([inf["ref"], inf["s"]], -1)[0], 5e-6, "style")
    if fs.multispeaker:
        assert_close(torch.from_numpy(np.load(tmp_path / "voice.npy")), fx["ref_s"][0], 1e-6, "saved voice")
        # the stored voice gives the same audio
        code, _, err = cli(capsys, *args[:-4], "--reference", tmp_path / "voice.npy", "--out", tmp_path / "again.wav",
                           "--stream")
        assert code == 0, err
        assert np.array_equal(soundfile.read(tmp_path / "again.wav", dtype="float32")[0], wave)


def test_keep_training_modules_keeps_them_and_fills_a_missing_one_from_utils(fixture_set, tmp_path, capsys):
    raw = torch.load(FIXTURES / fixture_set.name / "epoch_2nd_00003.pth", weights_only=True)
    del raw["net"]["pitch_extractor"]
    torch.save(raw, tmp_path / "no_jdc.pth")
    jdc = FIXTURES / fixture_set.config["F0_path"]
    code, out, err = cli(capsys, "import-styletts2", "--config", FIXTURES / f"{fixture_set.name}.yml", "--checkpoint",
                         tmp_path / "no_jdc.pth", "--jdc", jdc, "--keep-training-modules", "--out", tmp_path / "m")
    assert code == 0, err
    assert f"pitch_extractor    not in the checkpoint: from {jdc.resolve()}" in out and "mpd                loaded" in out
    model = load_model(tmp_path / "m", for_inference=False)
    for module, attr in (("mpd", "mpd"), ("text_aligner", "text_aligner"), ("wd", "slm_discriminator")):
        state = fixture_set.stage2_state(module)
        own = getattr(model, attr).state_dict()
        assert all(torch.equal(own[k], state[k]) for k in state)
    jdc_state = torch.load(jdc, weights_only=True)["net"]
    assert torch.equal(model.pitch_extractor.state_dict()["classifier.weight"], jdc_state["classifier.weight"])


def test_import_errors_are_one_line_and_write_nothing(fixture_set, tmp_path, capsys):
    config = FIXTURES / f"{fixture_set.name}.yml"
    torch.save({"model": {}}, tmp_path / "asr.pth")
    cases = [
        (["--checkpoint", tmp_path / "missing.pth"], "checkpoint not found"),
        (["--checkpoint", tmp_path / "asr.pth"], "expected a reference checkpoint with a 'net' entry"),
        (["--checkpoint", FIXTURES / fixture_set.name / "epoch_2nd_00003.pth", "--plbert", tmp_path],
         "no PL-BERT config.yml here"),
    ]
    for extra, message in cases:
        code, _, err = cli(capsys, "import-styletts2", "--config", config, *extra, "--out", tmp_path / "m")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("case", ["empty text", "no speakable symbol", "missing reference", "corrupt reference",
                                  "unsupported reference", "bad voice", "bad output format"])
def test_bad_input_is_one_clear_error_exit_2_and_nothing_written(imported, tmp_path, capsys, case):
    _, path, _ = imported
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (tmp_path / "notes.txt").write_text("not audio")
    np.save(tmp_path / "voice.npy", np.zeros((2, 7), dtype=np.float32))
    text, reference, out = "Hello there.", None, tmp_path / "out.wav"
    expected = {"empty text": "empty text", "no speakable symbol": "no speakable symbol", "missing reference": "no such audio file",
                "corrupt reference": "cannot read audio", "unsupported reference": "cannot read audio",
                "bad voice": "a stored voice is a float array", "bad output format": "unknown audio format"}[case]
    if case == "empty text":
        text = "   "
    elif case == "no speakable symbol":
        text = "?! … , ;"
    elif case == "bad output format":
        out = tmp_path / "out.xyz"
    else:
        reference = tmp_path / {"missing reference": "nope.wav", "corrupt reference": "corrupt.wav",
                                "unsupported reference": "notes.txt", "bad voice": "voice.npy"}[case]
    before = sorted(tmp_path.iterdir())
    args = ["synthesize", "--model", path, "--text", text, "--out", out, "--dump", tmp_path / "dump", "--device", "cpu"]
    code, _, err = cli(capsys, *args, *(["--reference", reference] if reference else []))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    if reference is not None:
        assert str(reference) in lines[0]  # the message names the file
    assert sorted(tmp_path.iterdir()) == before  # no audio, no dump, no partial file


def sentences(n_words, seed=0, lengths=(6, 12, 25, 120)):  # 120 words is over the 512-token limit
    rng = random.Random(seed)
    vocab = "the quick brown fox jumps over a lazy dog while seven tired wizards quietly hum old songs".split()
    out, n = [], 0
    while n < n_words:
        k = rng.choice(lengths)
        words = [rng.choice(vocab) for _ in range(k)]
        words[0] = words[0].capitalize()
        for i in range(7, k, 9):
            words[i] += ","
        out.append(" ".join(words) + rng.choice([".", "!", "?"]))
        n += k
    return " ".join(out)


@torch.inference_mode()
def test_style_is_carried_from_chunk_to_chunk_as_in_long_form_inference(imported):
    fs, path, _ = imported
    model = load_model(path)
    ref = fs.fx["ref_s"] if fs.multispeaker else None
    tokens = [torch.tensor(c.tokens) for c in Synthesizer(model).chunks(sentences(40, seed=1))[:3]]
    assert len(tokens) == 3

    def styles(carry):  # alpha = beta = 1: the used style is the (carried) sampled one
        g = torch.Generator().manual_seed(0)
        outs = model.synthesize_chunks(tokens, ref, alpha=1.0, beta=1.0, speed=30.0, style_carry=carry, batch_size=1,
                                       generator=g, decoder_seed=0, return_intermediates=True)
        return [o.style for o in outs]

    sampled, carried = styles(0.0), styles(0.7)
    assert torch.equal(carried[0], sampled[0])
    for i in (1, 2):
        assert_close(carried[i], 0.7 * carried[i - 1] + 0.3 * sampled[i], 1e-6, f"style of chunk {i}")


@torch.inference_mode()
def test_batched_chunks_encode_like_single_ones(imported):
    fs, path, _ = imported
    model = load_model(path)
    chunks = [c.tokens for c in Synthesizer(model).chunks(sentences(30, seed=2))][:3]
    lengths = torch.tensor([len(c) for c in chunks])
    batch = torch.zeros(len(chunks), int(lengths.max()), dtype=torch.long)
    for i, c in enumerate(chunks):
        batch[i, : len(c)] = torch.tensor(c)
    style = torch.randn(len(chunks), model.style_dim, generator=torch.Generator().manual_seed(0))
    t_en, bert_dur, d_en, mask = model.encode_text(batch, lengths)
    d, logits, _ = model.predict_durations(d_en, style, lengths, mask)
    for i, c in enumerate(chunks):
        t1, b1, e1, m1 = model.encode_text(torch.tensor([c]))
        d1, l1, _ = model.predict_durations(e1, style[i : i + 1], lengths[i : i + 1], m1)
        n = len(c)
        assert_close(t_en[i, :, :n], t1[0], 5e-6, "t_en")
        assert_close(bert_dur[i, :n], b1[0], 2e-5, "bert_dur")
        assert_close(logits[i, :n], l1[0], 5e-6, "duration logits")
    assert model.chunk_batches([10, 10, 9, 30, 31, 11], batch_size=2) == [[0], [1, 2], [3, 4], [5]]


@torch.inference_mode()
def test_inference_speedups_leave_the_output_unchanged(imported, monkeypatch):
    """prepare_for_inference (weight norm folded) and the decoders' fast path: the same numbers, up to the
    order of the sums in the generator's channels-last convolutions (test_decoders holds that order's
    error against float64)."""
    fs, path, _ = imported
    inf = fs.fx["infer_fixed"]
    reference = fs.fx["ref_s"] if fs.multispeaker else None

    def run(model):
        return model.synthesize(inf["tokens"], reference, durations=inf["pred_dur"], decoder_seed=0,
                                generator=torch.Generator().manual_seed(0))

    fast = run(load_model(path).prepare_for_inference())
    monkeypatch.setattr(decoder_base, "FAST_PATH", False)
    assert_close(fast, run(load_model(path)), 1e-4, "fast path against the reference ops")  # issue 13: <= 1e-4


@torch.inference_mode()
def test_the_bf16_path_runs_the_generator_convolutions_in_bfloat16(imported):
    fs, path, _ = imported
    inf = fs.fx["infer_fixed"]
    reference = fs.fx["ref_s"] if fs.multispeaker else None
    waves = []
    for bf16 in (False, True):
        model = load_model(path).prepare_for_inference(bf16=bf16)
        waves.append(model.synthesize(inf["tokens"], reference, durations=inf["pred_dur"], decoder_seed=0,
                                      generator=torch.Generator().manual_seed(0)))
    dtypes = {m.weight.dtype for m in model.decoder.generator.modules() if isinstance(m, torch.nn.Conv1d)}
    assert dtypes == {torch.bfloat16} and model.decoder.encode.conv1.weight.dtype == torch.float32
    assert waves[1].dtype == torch.float32 and waves[1].shape == waves[0].shape
    spectra = [log_mel(w) for w in waves]
    assert 0 < float((spectra[1] - spectra[0]).abs().mean()) < 0.1  # close, not exact


def test_first_audio_comes_before_the_rest_is_synthesized(imported, monkeypatch):
    fs, path, _ = imported
    synth = Synthesizer(path, device="cpu")
    decoded = []
    decode = synth.model.decode
    monkeypatch.setattr(synth.model, "decode", lambda *a: decoded.append(1) or decode(*a))
    reference = fs.fx["ref_s"] if fs.multispeaker else None
    pieces = synth.stream("One two three. Four five six. Seven eight nine. Ten.", reference=reference, seed=0, speed=30.0)
    next(pieces)
    assert len(decoded) == 1
    assert sum(1 for _ in pieces) >= 3


def test_two_thousand_words_are_chunked_completely_within_the_token_limit(imported):
    fs, path, _ = imported
    synth = Synthesizer(path, device="cpu")
    # The limit of the model under test: PL-BERT's positions and the diffusion's unconditional table.
    limit = min(fs.aux_config("PLBERT_dir")["model_params"]["max_position_embeddings"],
                fs.stage2_state("diffusion")["diffusion.net.fixed_embedding.embedding.weight"].shape[0])
    text = sentences(2000)
    chunks = synth.chunks(text)
    assert all(c.tokens[0] == 0 for c in chunks)
    assert max(len(c.tokens) for c in chunks) <= synth.model.max_tokens == limit
    assert len(chunks) > len(split_sentences(text))  # some sentences were too long and were split
    whole = synth.model.frontend.phonemize_batch(split_sentences(text))
    assert " ".join(c.phonemes for c in chunks).split() == " ".join(whole).split()  # nothing dropped


def test_long_text_streams_to_the_file_chunk_by_chunk(imported, tmp_path, capsys, monkeypatch):
    fs, path, _ = imported
    text = sentences(100, seed=4, lengths=(4, 6, 8))
    (tmp_path / "long.txt").write_text(text)
    decoded, written = [], []  # at each write to the file: how many chunks were decoded so far
    decode, write = StyleTTS2.decode, soundfile.SoundFile.write
    monkeypatch.setattr(StyleTTS2, "decode", lambda *a: decoded.append(1) or decode(*a))
    monkeypatch.setattr(soundfile.SoundFile, "write", lambda f, data: written.append(len(decoded)) or write(f, data))
    args = ["synthesize", "--model", path, "--text-file", tmp_path / "long.txt", "--speed", "30", "--seed", "0",
            "--out", tmp_path / "long.wav", "--device", "cpu"]
    if fs.multispeaker:
        np.save(tmp_path / "voice.npy", fs.fx["ref_s"][0].numpy())
        args += ["--reference", tmp_path / "voice.npy"]
    code, _, err = cli(capsys, *args, "--stream", "--style-carry", "0.5", "--batch-size", "4")
    assert code == 0, err
    n = len(Synthesizer(path, device="cpu").chunks(text))
    assert n > 10 and written == list(range(1, n + 1))  # each chunk written (and let go) before the next is made
    streamed = soundfile.read(tmp_path / "long.wav", dtype="float32")[0]
    tokens = sum(len(c.tokens) for c in Synthesizer(path, device="cpu").chunks(text))
    assert len(streamed) >= 600 * tokens - n * (50 if fs.multispeaker else 0)  # >= 1 frame per token: all of it
    decoded.clear(), written.clear()
    code, _, err = cli(capsys, *args, "--style-carry", "0.5", "--batch-size", "4")  # written at the end
    assert code == 0, err
    assert written == [n] * n
    assert np.array_equal(soundfile.read(tmp_path / "long.wav", dtype="float32")[0], streamed)
