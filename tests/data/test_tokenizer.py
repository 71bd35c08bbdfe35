from collections import Counter

import numpy as np
import pytest

from textgen.data.corpus import parse_pfr_line, pfr_to_text
from textgen.data.normalize import normalize
from textgen.data.tokenizer import UNK, CharTokenizer, Vocab, WordTokenizer, jieba_words


def test_vocab_ids_are_deterministic_frequency_then_code_point():
    v = Vocab.build(Counter("bbbaacc\n\n\nd"))
    # b:3, \n:3 tie -> code point order (\n first); then a:2, c:2; then d:1
    assert v.tokens == [UNK, "\n", "b", "a", "c", "d"]
    assert Vocab.build(Counter("cc\n\n\nbbbaad")).tokens == v.tokens


def test_min_freq_and_max_vocab():
    counts = Counter({"的": 5, "了": 3, "是": 1})
    assert Vocab.build(counts, min_freq=2).tokens == [UNK, "的", "了"]
    assert Vocab.build(counts, max_vocab=2).tokens == [UNK, "的"]
    with pytest.raises(ValueError, match="min_freq must be >= 1, got 0"):
        Vocab.build(counts, min_freq=0)
    with pytest.raises(ValueError, match="max_vocab must be >= 2"):
        Vocab.build(counts, max_vocab=1)


def test_char_round_trip_and_unknowns(corpus_lines):
    text = normalize("".join(pfr_to_text(line) + "\n" for line in corpus_lines(50)))
    vocab = Vocab.build(Counter(text))
    tok = CharTokenizer(vocab)
    ids = tok.encode(text)
    assert ids.dtype == np.uint16 and len(ids) == len(text)
    assert tok.decode(ids) == text
    assert list(tok.encode("的龘")) == [vocab.id("的"), 0]  # unseen character -> <unk> id 0
    assert Vocab.from_dict(vocab.to_dict()).tokens == vocab.tokens


def test_fullwidth_and_ascii_digits_get_the_same_ids():
    vocab = Vocab.build(Counter(normalize("１９９８年")))
    tok = CharTokenizer(vocab)
    assert list(tok.encode(normalize("1998年"))) == list(tok.encode(normalize("１９９８年")))
    assert 0 not in tok.encode(normalize("1998年"))


def test_jieba_word_level_on_real_slice(corpus_lines):
    lines = corpus_lines(60)
    text = normalize("".join(pfr_to_text(line) + "\n" for line in lines))
    words = jieba_words(text)
    assert "".join(words) == text  # segmentation loses nothing
    assert words.count("\n") == text.count("\n")
    vocab = Vocab.build(Counter(words), level="word")
    tok = WordTokenizer(vocab)
    assert tok.decode(tok.encode(text)) == text
    # jieba agrees with the corpus's gold segmentation on most words (word-level F1)
    gold = [normalize(w) for line in lines for w in parse_pfr_line(line)]

    def spans(ws):
        out, pos = set(), 0
        for w in ws:
            if w != "\n":
                out.add((pos, pos + len(w)))
                pos += len(w)
        return out

    got, want = spans(words), spans(gold)
    f1 = 2 * len(got & want) / (len(got) + len(want))
    assert f1 > 0.8, f1


def test_vocab_rejects_bad_input():
    with pytest.raises(ValueError, match="tokens\\[0\\] must be"):
        Vocab(["a", UNK])
    with pytest.raises(ValueError, match="level must be one of"):
        Vocab([UNK], level="byte")
