"""The generic inference pipeline on a toy model: chunking within the model's token limit, options
the model declares, seeds, durations, voices, streaming, dumps, and clear errors."""

import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from tts_zoo.audio import AudioError
from tts_zoo.interfaces import TextFrontend, TTSModel
from tts_zoo.dump import alignment_f0_image, write_png
from tts_zoo.synthesize import Synthesizer, SynthesisError

REPO = Path(__file__).resolve().parents[2]


class CharFrontend(TextFrontend):
    symbols = ["_", " ", ",", ".", "!", "?", *"abcdefghijklmnopqrstuvwxyz"]

    def __init__(self):
        self.lookup = {s: i for i, s in enumerate(self.symbols)}
        self.last_dropped = []

    def phonemize(self, text):
        return text.lower()

    def encode(self, phonemes):
        self.last_dropped = [c for c in phonemes if c not in self.lookup]
        return [self.lookup[c] for c in phonemes if c in self.lookup]


class ToyTTS(TTSModel):
    """Each token becomes ``durations[i]`` (default 2) samples of value id + style sum + noise."""

    sample_rate = 100
    max_tokens = 16
    token_prefix = (0,)
    style_size = 3

    def __init__(self, end_trim_samples=0):
        super().__init__()
        self.frontend = CharFrontend()
        self.gain = nn.Parameter(torch.ones(()))
        self.end_trim_samples = end_trim_samples
        self.calls = []

    def synthesize(self, tokens, style=None, *, speed=1.0, durations=None, generator=None, return_intermediates=False):
        assert tokens.shape[0] == 1 and tokens[0, 0] == 0 and tokens.shape[1] <= self.max_tokens
        self.calls.append(tokens[0].tolist())
        d = torch.full((tokens.shape[1],), 2) if durations is None else durations
        d = torch.clamp((d / speed).round().long(), min=0)
        base = (tokens[0].float() + (0 if style is None else float(style.sum()))).repeat_interleave(d)
        wave = self.gain * base + 1e-3 * torch.randn(base.shape, generator=generator)
        if return_intermediates:
            return SimpleNamespace(wave=wave, durations=d, f0=base.repeat_interleave(2), style=style)
        return wave

    def reference_style(self, wave):
        return wave[:3].reshape(1, 3) * 0 + wave.abs().mean()


@pytest.fixture
def synth():
    return Synthesizer(ToyTTS(), device="cpu")


def test_text_is_split_into_chunks_within_the_token_limit_prefix_included(synth):
    text = "Hi there. A sentence that is much too long, for sixteen tokens, so it splits. Ok!"
    chunks = synth.chunks(text)
    assert all(c.tokens[0] == 0 and len(c.tokens) <= 16 for c in chunks)
    assert " ".join(c.phonemes for c in chunks).split() == text.lower().split()
    assert [c.phonemes for c in chunks][:2] == ["hi there.", "a sentence that"]
    assert chunks[2].text.endswith("(part 2/6)")


def test_phonemes_are_encoded_as_given(synth):
    chunks = synth.chunks(phonemes="ab  c. d")
    assert [c.tokens for c in chunks] == [[0, 6, 7, 1, 8, 3], [0, 9]]


@pytest.mark.parametrize("text, message", [("", "empty text"), ("  \n ", "empty text"),
                                           ("?! ... , ;", "no speakable symbol"), ("123 456", "no speakable symbol")])
def test_empty_or_unspeakable_text_is_one_clear_error(synth, text, message):
    with pytest.raises(SynthesisError, match=message) as e:
        synth.chunks(text)
    assert "\n" not in str(e.value)


def test_characters_the_frontend_lacks_are_counted(synth):
    synth.chunks("née café")
    assert synth.dropped == {"é": 2}


def test_stream_yields_the_first_chunk_before_the_rest_is_synthesized(synth):
    pieces = synth.stream("One two. Three four. Five six.", seed=0)
    first = next(pieces)
    assert len(synth.model.calls) == 1 and first.dtype == np.float32
    assert not torch.is_inference_mode_enabled()  # the caller's code between chunks runs normally
    rest = list(pieces)
    assert len(synth.model.calls) == 3 and len(rest) == 2
    assert first.shape == (2 * len("one two.") + 2,)


def test_two_thousand_words_stream_completely_in_bounded_memory(synth):
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefgh"), size=rng.integers(1, 7))) for _ in range(2000)]
    text = " ".join(w + (". " if i % 9 == 8 else " ") for i, w in enumerate(words)).replace(". ", ". X ")
    synth.defaults["speed"] = 0.005  # 400 samples per token: ~16 MB of audio in all
    tracemalloc.start()
    try:
        total = sum(len(piece) for piece in synth.stream(text, seed=0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    chunks = synth.chunks(text)
    assert total == 400 * sum(len(c.tokens) for c in chunks)
    assert " ".join(c.phonemes for c in chunks).split() == text.lower().split()
    assert peak < 0.1 * 4 * total  # one chunk at a time, never the whole waveform


def test_seed_makes_synthesis_reproducible(synth):
    a, b, c = synth("Same text.", seed=3), synth("Same text.", seed=3), synth("Same text.", seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_only_options_the_model_declares_are_passed(synth):
    synth.defaults.update(alpha=0.3, speed=2.0)  # recipe defaults: alpha is not the toy's, speed is
    assert synth("ab.", seed=0).shape == (4,)  # 4 tokens x 2 samples / speed 2
    with pytest.raises(SynthesisError, match="ToyTTS does not take option"):
        synth("ab.", alpha=0.5)
    with pytest.raises(SynthesisError, match="unknown synthesis option"):
        synth("ab.", temperature=0.5)


def test_given_durations_set_the_length_and_are_checked(synth, tmp_path):
    np.save(tmp_path / "d.npy", np.array([0, 3, 1, 2]))
    assert synth("ab.", durations=tmp_path / "d.npy", seed=0).shape == (6,)
    with pytest.raises(SynthesisError, match="expected 5 whole, non-negative frame counts"):
        synth("abc.", durations=tmp_path / "d.npy")
    with pytest.raises(SynthesisError, match="need a text that fits one chunk; this one makes 2"):
        synth("Ab. Cd.", durations=[1, 1, 1, 1])
    with pytest.raises(SynthesisError, match="cannot read durations"):
        synth("ab.", durations=tmp_path / "missing.npy")


def test_stored_voices_round_trip_and_are_checked(synth, tmp_path):
    voice = torch.tensor([[0.5, 1.0, 1.5]])
    synth.save_voice(voice, tmp_path / "v.npy")
    assert torch.equal(synth.style(tmp_path / "v.npy"), voice)
    assert synth("a.", reference=tmp_path / "v.npy", seed=0)[0] == pytest.approx(3.0, abs=0.01)
    np.save(tmp_path / "bad.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(SynthesisError, match=r"a stored voice is a float array \[3\]"):
        synth.style(tmp_path / "bad.npy")
    with pytest.raises(SynthesisError, match="no such voice file"):
        synth.style(tmp_path / "nope.npy")
    with pytest.raises(AudioError, match="no such audio file"):
        synth.style(tmp_path / "nope.wav")


def test_a_multi_speaker_model_needs_a_reference(synth):
    synth.model.requires_reference = True
    with pytest.raises(SynthesisError, match="multi-speaker model: give a reference voice"):
        synth("ab.")


def test_each_chunk_loses_the_models_end_trim():
    synth = Synthesizer(ToyTTS(end_trim_samples=1), device="cpu")
    assert [len(p) for p in synth.stream("Ab. Cd.", seed=0)] == [7, 7]


def read_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        pos += 12 + n
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, width + 1)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:]


def test_png_writer_round_trips_an_image(tmp_path):
    image = (np.arange(12 * 7) % 256).astype(np.uint8).reshape(7, 12)
    write_png(tmp_path / "x.png", image)
    assert np.array_equal(read_png(tmp_path / "x.png"), image)


def test_alignment_image_marks_each_tokens_frames():
    image = alignment_f0_image(np.array([1, 0, 2]), f0=np.array([0, 1, 2, 3, 4, 5.0]))
    band = image.shape[0] - 162
    assert band % 3 == 0
    rows = image[:band:band // 3]  # one row per token
    assert (rows == 0).tolist() == [[True, True, False, False, False, False], [False] * 6, [False, False] + [True] * 4]
    assert image[-1, 0] == 0 and image[band + 2, -1] == 0  # F0 from the bottom (0) to the top (max)


def test_dump_writes_every_intermediate(synth, tmp_path):
    synth("Ab. C.", seed=0, dump=tmp_path / "dump")
    names = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert names == ["chunk_000_alignment_f0.png", "chunk_000_durations.npy", "chunk_000_f0.npy", "chunk_000_tokens.npy",
                     "chunk_000_wave.npy", "chunk_001_alignment_f0.png", "chunk_001_durations.npy", "chunk_001_f0.npy",
                     "chunk_001_tokens.npy", "chunk_001_wave.npy", "chunks.txt"]
    assert np.load(tmp_path / "dump" / "chunk_000_tokens.npy").tolist() == [0, 6, 7, 3]
    assert read_png(tmp_path / "dump" / "chunk_001_alignment_f0.png").shape[1] == 2 * 6


def test_the_module_imports_no_torch_and_an_unknown_model_is_exit_2_with_nothing_written(tmp_path):
    code = "import sys, tts_zoo.synthesize, tts_zoo.text_chunks; assert 'torch' not in sys.modules; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout == "ok\n"
    out = tmp_path / "out.wav"
    r = subprocess.run([sys.executable, "-m", "tts_zoo", "synthesize", "--model", str(tmp_path / "nope"), "--text", "Hi.",
                        "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no tts-zoo checkpoint here (expected a "
                                             "directory with model.safetensors)"]
    assert list(tmp_path.iterdir()) == []


def test_synthesizer_is_importable_from_the_package():
    import tts_zoo

    assert tts_zoo.Synthesizer is Synthesizer
