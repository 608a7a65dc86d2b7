"""Long text → chunks within a token limit: sentence, then clause, then word boundaries; nothing lost."""

import random

import pytest

from tts_zoo.errors import TTSZooError
from tts_zoo.text_chunks import ChunkError, chunk_text, split_clauses, split_sentences, split_to_fit


def test_sentences_end_at_terminal_punctuation_with_closing_quotes():
    text = 'He said "Stop!" Then he left. Did she? Yes… Wait...   what happened.\nDone'
    assert split_sentences(text) == ['He said "Stop!"', "Then he left.", "Did she?", "Yes…", "Wait...",
                                     "what happened.", "Done"]


def test_a_blank_line_ends_a_sentence_and_whitespace_collapses():
    assert split_sentences("Chapter One\n\n  It was\tnight.\nQuiet.") == ["Chapter One", "It was night.", "Quiet."]


def test_abbreviations_initials_and_lower_case_continuations_do_not_end_a_sentence():
    text = "Dr. Smith met J. R. Jones at 3.5 p.m. today. Mr. and Mrs. Lee, e.g. the neighbours, came too. End."
    assert split_sentences(text) == ["Dr. Smith met J. R. Jones at 3.5 p.m. today.",
                                     "Mr. and Mrs. Lee, e.g. the neighbours, came too.", "End."]


def test_phoneme_strings_split_at_their_separated_periods():
    ph = "hˈɛloʊ wˈɜːld . ðə kˈæt sˈæt , ɔn ðə mˈæt . ɑːɹ juː ʃˈʊɹ ?"
    assert split_sentences(ph, abbreviations=False) == ["hˈɛloʊ wˈɜːld .", "ðə kˈæt sˈæt , ɔn ðə mˈæt .",
                                                        "ɑːɹ juː ʃˈʊɹ ?"]
    # with the text rules, the lower-case continuation would keep them together
    assert len(split_sentences(ph)) == 1


def test_clauses_split_after_comma_semicolon_colon_and_dash_but_not_inside_numbers():
    pieces = ["one,", "two;", "three:", "four —", "five 3,5 six"]
    assert split_clauses("one, two; three: four — five 3,5 six") == pieces


def words_fit(limit):
    return lambda piece: len(piece.split()) <= limit


def test_a_sentence_that_fits_stays_whole():
    assert split_to_fit("a b c, d e.", words_fit(5)) == ["a b c, d e."]


def test_a_long_sentence_is_packed_greedily_by_clauses_then_words():
    sentence = "a b c, d e f g h i j k, l m."
    chunks = split_to_fit(sentence, words_fit(4))
    assert chunks == ["a b c,", "d e f g", "h i j k,", "l m."]
    assert " ".join(chunks) == sentence


def test_a_word_longer_than_the_limit_is_an_error_not_a_truncation():
    with pytest.raises(ChunkError, match="the word 'x+…' alone is longer than the model's token limit") as e:
        split_to_fit("short " + "x" * 50 + " word", lambda piece: len(piece) <= 20)
    assert isinstance(e.value, TTSZooError) and "\n" not in str(e.value)


def test_two_thousand_words_chunk_within_the_limit_without_losing_a_word():
    rng = random.Random(0)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    sentences, n_words = [], 0
    while n_words < 2000:
        n = rng.choice([3, 8, 20, 150])  # some sentences far longer than the limit
        words = [rng.choice(vocab) for _ in range(n)]
        for i in range(5, n, 7):
            words[i] += rng.choice([",", ";", ""])
        sentences.append(" ".join(words) + rng.choice([".", "!", "?"]))
        n_words += n
    text = " ".join(sentences)
    limit = 200  # characters, standing in for tokens
    chunks = chunk_text(text, lambda piece: len(piece) <= limit)
    assert all(len(c) <= limit for c in chunks)
    assert " ".join(chunks).split() == text.split()  # every word, in order
    assert len(chunks) >= len(sentences)
