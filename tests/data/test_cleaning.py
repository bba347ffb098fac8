"""Text cleaning: BOM, line ends, typographic and accented characters, cp1252 mojibake, counted changes."""

import random

from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data import cleaning
from rnnkit.data.cleaning import StreamCleaner, clean_text


def test_bom_and_line_ends():
    text, report = clean_text("\ufeffone\r\ntwo\rthree\n")
    assert text == "one\ntwo\nthree\n"
    assert report.removed == {cleaning.BOM: 1}
    assert report.mapped == {cleaning.LINE_END: 2}
    assert report.chars_in == 16 and report.chars_out == len(text) == 14


def test_typographic_and_accents_to_ascii():
    text, report = clean_text("\u2018a\u2019 \u201cb\u201d c\u2013d\u2014e\u2026 caf\u00e9 \ufb01n \u00bd")
    assert text == "'a' \"b\" c-d-e... cafe fin 1/2"
    assert report.mapped[cleaning.TYPO] == 7
    assert report.mapped[cleaning.ACCENT] == 3
    assert report.removed == {}


def test_cp1252_mojibake():
    text, report = clean_text("a\x96b\x97c\x85")
    assert text == "a-b-c..."
    assert report.mapped == {cleaning.MOJIBAKE: 3}
    text, _ = clean_text("a\x96b\x97c\x85", charset="unicode")
    assert text == "a\u2013b\u2014c\u2026"


def test_unicode_charset_keeps_letters_and_normalises():
    text, report = clean_text("cafe\u0301 \u2603\u00a0x", charset="unicode")
    assert text == "caf\u00e9 \u2603 x"
    assert report.mapped[cleaning.NFC] == 1 and report.mapped[cleaning.SPACE] == 1


def test_removed_characters_are_counted_and_named():
    text, report = clean_text("snow\u2603man\u2603\x07")
    assert text == "snowman"
    assert report.removed == {cleaning.NO_ASCII: 2, cleaning.CONTROL: 1}
    assert report.removed_chars["'\u2603' (U+2603)"] == 2


def test_invalid_utf8_bytes_are_counted():
    raw = b"ok \xff\xfe done".decode("utf-8", "surrogateescape")
    text, report = clean_text(raw)
    assert text == "ok  done"
    assert report.removed == {cleaning.INVALID: 2}


def test_lowercase():
    assert clean_text("HeLLo \u00c9T\u00c9", lowercase=True)[0] == "hello ete"
    assert clean_text("HeLLo")[0] == "HeLLo"


@given(st.text(max_size=80))
def test_ascii_output_and_every_change_counted(text):
    out, report = clean_text(text)
    assert all(" " <= c <= "~" or c == "\n" for c in out)
    no_cr = text.replace("\r\n", "\n").replace("\r", "\n")
    changed = sum(1 for c in no_cr if not (" " <= c <= "~" or c == "\n"))
    assert changed == report.total_mapped - report.mapped.get(cleaning.LINE_END, 0) + report.total_removed


def test_keep_layout_keeps_tabs_and_indentation_but_still_repairs():
    text = "if x:\r\n\tpass\x0c\n  y\u00a0= '\u0096'\udcff"
    assert clean_text(text)[0] == "if x:\n pass\n\n  y = '-'"
    kept, report = clean_text(text, keep_layout=True)
    assert kept == "if x:\n\tpass\x0c\n  y = '-'"  # ascii still spells U+00A0 as a space
    assert clean_text(text, "unicode", keep_layout=True)[0] == "if x:\n\tpass\x0c\n  y\u00a0= '\u2013'"
    assert report.mapped["CRLF/CR line end"] == 1 and report.removed == {"invalid UTF-8 byte": 1}


def test_the_stream_cleaner_gives_what_one_clean_text_gives_whatever_the_chunks():
    rng = random.Random(0)
    alphabet = ["a", "\r", "\n", "\t", "e", "\u0301", "\u00e9", "\u2019", "\x85", "\udc9f", "\u00a0", "\ufeff"]
    for trial in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        charset = ("ascii", "unicode")[trial % 2]
        expected, report = clean_text(text, charset, keep_layout=True)
        cleaner, out, pos = StreamCleaner(charset), [], 0
        while pos < len(text):
            size = rng.randint(1, 6)
            out.append(cleaner.feed(text[pos:pos + size]))
            pos += size
        out.append(cleaner.finish())
        assert "".join(out) == expected, repr(text)
        assert cleaner.report.removed == report.removed
        assert cleaner.report.mapped == {k: v for k, v in report.mapped.items() if v}
