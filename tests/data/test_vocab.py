"""Vocabulary: reserved ids, encode/decode round trip, unknown characters named, JSON save/load."""

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.vocab import EOS, PAD, Vocab
from rnnkit.errors import DataError, VocabularyError

ALPHABET = "abc XYZ.!?'é\n"


def test_reserved_ids_and_size():
    vocab = Vocab.from_text("hello")
    assert (PAD, EOS) == (0, 1)
    assert len(vocab) == 2 + 4
    assert min(vocab.encode("hello")) == 2


@given(st.text(alphabet=ALPHABET, max_size=60))
def test_encode_decode_round_trip(text):
    vocab = Vocab.from_text(ALPHABET)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert vocab.encode_array(text).tolist() == ids


def test_decode_stops_at_eos_and_skips_pad():
    vocab = Vocab.from_text("ab")
    a, b = vocab.encode("ab")
    assert vocab.decode([a, PAD, b, EOS, a]) == "ab"
    assert vocab.decode(torch.tensor([a, EOS, b, PAD]), stop_at_eos=False) == "ab"
    with pytest.raises(VocabularyError, match="outside"):
        vocab.decode([99])


@pytest.mark.parametrize("encode", ["encode", "encode_array"])
def test_unknown_character_is_named_with_position(encode):
    vocab = Vocab.from_text("abc")
    with pytest.raises(VocabularyError) as err:
        getattr(vocab, encode)("abc\u00e9a")
    message = str(err.value)
    assert "'é'" in message and "U+00E9" in message and "position 3" in message


def test_save_load_round_trip(tmp_path):
    vocab = Vocab.from_text("h\u00e9llo w\u00f6rld\n")
    vocab.save(tmp_path / "vocab.json")
    data = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert data["format_version"] == 1 and data["pad"] == 0 and data["eos"] == 1
    assert Vocab.load(tmp_path / "vocab.json") == vocab


def test_load_refuses_newer_format_and_missing_file(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"format_version": 99, "chars": ["a"]}))
    with pytest.raises(DataError, match="newer"):
        Vocab.load(path)
    with pytest.raises(DataError, match="no such"):
        Vocab.load(tmp_path / "missing.json")
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        Vocab.load(path)
