"""StyleTTS 2 text: the symbol table and TextCleaner against the fixtures (README section 4), the
word tokenizer, text normalization and the three frontends (espeak, phonemes, characters)."""

from __future__ import annotations

import pickle
import unicodedata

import pytest

from tts_zoo.interfaces import TextFrontend
from tts_zoo_styletts2.text.characters import CharactersFrontend
from tts_zoo_styletts2.text.cleaner import TextCleaner, normalize_text, strip_diacritics
from tts_zoo_styletts2.text.espeak import EspeakFrontend, word_tokenize
from tts_zoo_styletts2.text.phonemes import PhonemesFrontend
from tts_zoo_styletts2.text.symbols import SPACE_ID, SYMBOLS, symbol_to_id


def _espeak_available() -> bool:
    try:
        EspeakFrontend().phonemize("a")
    except Exception:  # no phonemizer / no espeak-ng library
        return False
    return True


needs_espeak = pytest.mark.skipif(not _espeak_available(), reason="phonemizer + espeak-ng not available")


# ----------------------------------------------------------------------------- fixture parity


def test_symbol_table_is_the_references(fixture_set):
    tc = fixture_set.fx["textcleaner"]
    assert SYMBOLS == tc["symbols"]
    assert len(SYMBOLS) == tc["n_symbols"] == fixture_set.model_params["n_token"]
    lookup = symbol_to_id()
    assert len(lookup) == tc["n_dict_entries"]
    assert lookup["'"] == 176 and SYMBOLS[174] == SYMBOLS[176] == "'"  # the later id wins
    assert SYMBOLS[SPACE_ID] == " " and SYMBOLS[0] == "$"


def test_text_cleaner_examples_exact(fixture_set):
    cleaner = TextCleaner()
    for example in fixture_set.fx["textcleaner"]["examples"]:
        ids, dropped = cleaner.encode(example["text"])
        assert ids == example["ids"], example["text"]
        assert dropped == example["dropped"], example["text"]
        assert [0] + TextCleaner()(example["text"]) == example["ids_with_leading_0"]
    expected = sum(len(e["dropped"]) for e in fixture_set.fx["textcleaner"]["examples"])
    assert sum(cleaner.oov_counts.values()) == expected  # counted, not printed


def test_inference_tokens_from_the_fixture_phonemes(fixture_set):
    fx = fixture_set.fx
    tokens = fx["infer_fixed"]["tokens"][0].tolist()
    assert tokens == [0] + TextCleaner()(fx["meta"]["phonemes"])
    frontend = PhonemesFrontend()
    assert [0] + frontend(fx["meta"]["phonemes"]) == tokens
    assert frontend.last_dropped == [] and not frontend.oov_counts


# ----------------------------------------------------------------------------- tokenizer, normalization


@pytest.mark.parametrize(
    "phonemes, expected",
    [
        ("spˈiːtʃ mˈɑːdəlz. ", "spˈiːtʃ mˈɑːdəlz ."),
        ("həlˈoʊ, wˈɜːld! ", "həlˈoʊ , wˈɜːld !"),
        ("ɐ: bˈiː. nˈɛkst sˈɛntəns.", "ɐ : bˈiː . nˈɛkst sˈɛntəns ."),  # every sentence's final period
        ('"kwˈoʊɾᵻd" (pɚɹˈɛn) dˈɑːɡz; ¿kwˈɛ?', '" kwˈoʊɾᵻd " ( pɚɹˈɛn ) dˈɑːɡz ; ¿kwˈɛ ?'),
        ("dˈæʃ… wˈʌn — tˈuː-θɹˈiː «ɐ»", "dˈæʃ… wˈʌn — tˈuː-θɹˈiː « ɐ »"),  # … and - stay attached
        ("wˈeɪt... ðɛn", "wˈeɪt ... ðɛn"),
        ("θɹˈiː.fˈaɪv 3,5 ɐ,b", "θɹˈiː.fˈaɪv 3,5 ɐ , b"),  # no split inside a token / before a digit
    ],
)
def test_word_tokenize_splits_punctuation_like_nltk(phonemes, expected):
    assert " ".join(word_tokenize(phonemes)) == expected


def test_normalize_text_maps_variants_to_the_table():
    assert normalize_text("  It’s\u00a0a ‘test’\t– “ok”…\n") == "It's a 'test' — “ok”…"
    assert normalize_text("ﬁne　ＡＢ... x´") == "fine AB… x'"  # NFKC: ligature, full width
    assert normalize_text("co\u00adop\u200b") == "coop"
    assert strip_diacritics("éüñ Å") == "eun A"


def test_table_symbols_survive_phoneme_cleanup():
    frontend = PhonemesFrontend()
    table = "".join(SYMBOLS[17:])  # everything but the pad and punctuation
    assert frontend.phonemize(f"  {table} \n") == table
    assert all(unicodedata.normalize("NFC", s) == s for s in SYMBOLS)


# ----------------------------------------------------------------------------- frontends


def test_phonemes_frontend_is_identity_after_whitespace_cleanup():
    frontend = PhonemesFrontend()
    assert isinstance(frontend, TextFrontend) and frontend.symbols == SYMBOLS
    assert frontend.phonemize(" ðə  kˈæt\tsˈæt .\n") == "ðə kˈæt sˈæt ."
    assert frontend.phonemize_batch(["a  b", " c"]) == ["a b", "c"]
    assert frontend.encode("ðə1") == [81, 83] and frontend.last_dropped == ["1"]


def test_characters_frontend_normalizes_and_counts_oov():
    frontend = CharactersFrontend()
    text = frontend.phonemize("Café – “naïve” ‘x’ 42ß")
    assert text == "Cafe — “naive” 'x' 42ß"
    lookup = symbol_to_id()
    assert frontend.encode(text) == [lookup[c] for c in text if c in lookup]
    assert frontend.last_dropped == ["4", "2", "ß"]
    frontend("9")
    assert frontend.oov_counts == {"4": 1, "2": 1, "ß": 1, "9": 1}
    assert CharactersFrontend(strip_diacritics=False).phonemize("é") == "é"
    assert frontend.describe()["strip_diacritics"] is True


@needs_espeak
def test_espeak_frontend_phonemizes_into_the_table(fixture_set):
    frontend = EspeakFrontend()
    phonemes = frontend.phonemize(fixture_set.fx["meta"]["text"])
    # espeak-ng 1.52 here vs 1.51 for the fixtures: do not require equal phonemes, only their shape.
    assert phonemes.endswith(" .") and "ˈ" in phonemes
    ids, dropped = frontend.encode_with_oov(phonemes)
    assert dropped == [] and not frontend.oov_counts and all(0 < i < len(SYMBOLS) for i in ids)
    assert phonemes.split() == word_tokenize(phonemes)  # already tokenised, single spaces
    assert frontend(fixture_set.fx["meta"]["text"]) == ids


@needs_espeak
def test_espeak_frontend_batches_and_splits_punctuation():
    frontend = EspeakFrontend()
    texts = ["Hello, world!", "", "Is it “quoted”… or not?", "Dogs bark. Cats meow."]
    batch = frontend.phonemize_batch(texts)
    assert batch == [frontend.phonemize(t) for t in texts]
    hello, empty, quoted, two = batch
    assert hello.endswith(" , wˈɜːld !") and empty == ""
    assert quoted.split()[2] == "“" and quoted.endswith(" ?")
    assert two.count(" .") == 2  # the period after each sentence is its own token
    for p in batch:
        assert frontend.encode_with_oov(p).dropped == []


@needs_espeak
def test_espeak_frontend_describe_and_pickle():
    frontend = EspeakFrontend(language="en-us", with_stress=False)
    info = frontend.describe()
    assert info["frontend"] == "espeak" and info["language"] == "en-us" and info["with_stress"] is False
    assert info["espeak_ng"].count(".") == 2 and info["phonemizer"]
    assert "ˈ" not in frontend.phonemize("Hello there.")
    clone = pickle.loads(pickle.dumps(frontend))  # e.g. sent to DataLoader workers
    assert clone.phonemize("Hello there.") == frontend.phonemize("Hello there.")


def test_espeak_batch_survives_texts_without_phonemes():
    from tts_zoo_styletts2.text.espeak import EspeakFrontend

    frontend = EspeakFrontend()
    out = frontend.phonemize_batch(["Hello there.", "...", "", "world"])
    assert len(out) == 4 and out[2] == ""
    assert out[0] == frontend.phonemize("Hello there.") and out[3] == frontend.phonemize("world")
