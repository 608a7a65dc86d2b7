"""The StyleTTS 2 symbol table: 178 symbols, id = index (fixtures README section 4, "TextCleaner").

``'$'`` (padding / start, id 0), 16 punctuation marks ending with the space (id 16), the 52 ASCII
letters, then 109 IPA letters, modifiers and intonation arrows. The table is the reference's
(``text_utils.py``) in its exact order, quirks included: the straight apostrophe occurs twice (ids 174
and 176, around the combining syllabic mark U+0329); a lookup built by walking the table keeps the
later id, so ``'`` encodes to 176 and id 174 is never produced (177 lookup keys, 178 embedding rows).
"""

from __future__ import annotations

PAD = "$"
PUNCTUATION = ';:,.!?¡¿—…"«»“” '
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LETTERS_IPA = (
    "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃ"
    "ˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘'\u0329'ᵻ"
)

SYMBOLS: list[str] = [PAD, *PUNCTUATION, *LETTERS, *LETTERS_IPA]
"""The table in id order (178 entries)."""

SPACE_ID = SYMBOLS.index(" ")


def symbol_to_id(symbols: list[str] = SYMBOLS) -> dict[str, int]:
    """Lookup of a table; a duplicated symbol keeps its LAST id, as the reference's dict does."""
    return {s: i for i, s in enumerate(symbols)}
