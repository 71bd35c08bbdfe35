"""textgen.data.prepare: splits, vocabulary, levels; bad corpus files refused, nothing left behind."""

import json

import numpy as np
import pytest

from textgen.data.corpus import CorpusError
from textgen.data.dataset import PreparedCorpus
from textgen.data.prepare import PrepareConfig, prepare


def _prep(tmp_path, sources, name="out", **kw):
    return prepare(
        PrepareConfig(sources=[str(s) for s in sources], out=str(tmp_path / name), **kw),
        progress=False,
    )


def test_real_slice_prepares_to_contiguous_splits(tmp_path, pfr_slice):
    meta = _prep(tmp_path, [pfr_slice])
    data = PreparedCorpus.open(tmp_path / "out")
    assert meta["split_mode"] == "contiguous" and meta["level"] == "char"
    assert meta["sources"][0]["format"] == "pfr" and len(meta["sources"][0]["sha256"]) == 64
    splits = {s: data.split(s) for s in ("train", "val", "test")}
    assert all(a.dtype == np.uint16 for a in splits.values())
    total = sum(len(a) for a in splits.values())
    assert 0.85 < len(splits["train"]) / total < 0.91
    assert 0.04 < len(splits["test"]) / total < 0.07
    nl = data.vocab.id("\n")
    # each split ends at a paragraph end, and together they are the whole text in order
    assert all(a[-1] == nl for a in splits.values())
    text = "".join(data.vocab.tokens[i] for a in splits.values() for i in a)
    assert text.startswith("迈向充满希望的新世纪——一九九八年新年讲话（附图片1张）\n")
    assert meta["splits"]["train"]["unk_rate"] == 0
    # at character level a split has as many characters as tokens; without a count in
    # meta.json (older preparations) the token count stands in
    assert all(data.split_chars(s) == len(a) for s, a in splits.items())
    del data.meta["splits"]["val"]["chars"]
    assert data.split_chars("val") == len(splits["val"])
    vocab_json = json.loads((tmp_path / "out" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab_json["tokens"][0] == "<unk>" and "\n" in vocab_json["tokens"]
    assert "的" in (tmp_path / "out" / "vocab.json").read_text(
        encoding="utf-8"
    )  # raw, not \\u escapes


def _make_docs(tmp_path, n=12):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(n):
        (folder / f"doc{i:02d}.txt").write_text(
            # every digit in every document: the vocabulary comes from the train split alone
            f"第{i}篇文章。" * (20 + i) + "\n结尾0123456789。\n",
            encoding="utf-8",
        )
    return folder


def test_document_splits_are_disjoint_and_reproducible(tmp_path):
    folder = _make_docs(tmp_path)
    a = _prep(tmp_path, [folder], "a", seed=7, val_fraction=0.1, test_fraction=0.1)
    _prep(tmp_path, [folder], "b", seed=7, val_fraction=0.1, test_fraction=0.1)
    c = _prep(tmp_path, [folder], "c", seed=8, val_fraction=0.1, test_fraction=0.1)
    assert a["split_mode"] == "documents"
    for name in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{name}.bin").read_bytes() == (
            tmp_path / "b" / f"{name}.bin"
        ).read_bytes()
    data = PreparedCorpus.open(tmp_path / "a")

    def doc_numbers(split):
        text = "".join(data.vocab.tokens[i] for i in data.split(split))
        return {int(part.split("篇")[0]) for part in text.split("第")[1:]}

    docs = {s: doc_numbers(s) for s in ("train", "val", "test")}
    assert docs["train"] and docs["val"] and docs["test"]
    assert not (docs["train"] & docs["val"]) and not (docs["train"] & docs["test"])
    assert not (docs["val"] & docs["test"])
    assert set().union(*docs.values()) == set(range(12))
    assert (
        a["splits"] != c["splits"]
        or (tmp_path / "a" / "val.bin").read_bytes() != (tmp_path / "c" / "val.bin").read_bytes()
    )


def test_one_file_of_identical_lines_prepares(tmp_path):
    f = tmp_path / "same.txt"
    f.write_text("同一句话。\n" * 200, encoding="utf-8")
    meta = _prep(tmp_path, [f])
    assert all(meta["splits"][s]["tokens"] > 0 for s in ("train", "val", "test"))


def test_gbk_corpus_and_fullwidth_digits(tmp_path):
    f = tmp_path / "gbk.txt"
    f.write_bytes(("１９９８年，新年。\n1998年，旧年。\n" * 50).encode("gbk"))
    meta = _prep(tmp_path, [f])
    assert meta["sources"][0]["encoding"] == "gb18030"
    data = PreparedCorpus.open(tmp_path / "out")
    assert "１" not in data.vocab and "1" in data.vocab and "，" in data.vocab


def test_word_level_jieba_and_gold(tmp_path, pfr_slice):
    meta = _prep(tmp_path, [pfr_slice], "w", level="word")
    data = PreparedCorpus.open(tmp_path / "w")
    assert meta["level"] == "word" and data.vocab.level == "word"
    assert "中国" in data.vocab and "\n" in data.vocab
    gold = _prep(tmp_path, [pfr_slice], "g", level="word", segmenter="gold")
    assert gold["segmenter"] == "gold" and "江泽民" not in PreparedCorpus.open(tmp_path / "g").vocab
    with pytest.raises(ValueError, match="needs PFR-tagged sources"):
        f = tmp_path / "plain.txt"
        f.write_text("普通文本，不是标注语料。\n" * 10, encoding="utf-8")
        _prep(tmp_path, [f], "x", level="word", segmenter="gold")


def test_max_vocab_gives_unknowns_and_coverage(tmp_path, pfr_slice):
    meta = _prep(tmp_path, [pfr_slice], max_vocab=100)
    assert meta["vocab_size"] == 100
    assert 0.3 < meta["coverage"] < 1
    assert meta["splits"]["val"]["unk_rate"] > 0


def test_failure_leaves_nothing_behind(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("好的文本。\n" * 10, encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00binary")
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match="bad.txt"):
        _prep(tmp_path, [good, bad])
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"good.txt", "bad.txt"}


def test_too_small_corpus_is_refused_cleanly(tmp_path):
    f = tmp_path / "tiny.txt"
    f.write_text("一行。", encoding="utf-8")
    with pytest.raises(CorpusError, match="too small to split"):
        _prep(tmp_path, [f])
    assert {p.name for p in tmp_path.iterdir()} == {"tiny.txt"}


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="val_fraction must be in \\(0, 0.5\\), got 0.7"):
        PrepareConfig(val_fraction=0.7)
    with pytest.raises(ValueError, match="level must be one of char, word, got 'byte'"):
        PrepareConfig(level="byte")


def test_vocabulary_comes_from_the_train_split_only(tmp_path):
    f = tmp_path / "one.txt"  # one file: contiguous split, the last lines are the test split
    f.write_text("共同的文字。\n" * 200 + "龘靐齉。\n", encoding="utf-8")
    meta = _prep(tmp_path, [f])
    data = PreparedCorpus.open(tmp_path / "out")
    assert meta["vocab_from"] == "train" and meta["distinct_tokens"] == 10
    assert "龘" not in data.vocab and len(data.vocab) == 1 + 7  # <unk> + the train characters
    test = meta["splits"]["test"]
    assert test["unknown"] == 3 and test["unknown_chars"] == 3 and test["unk_rate"] > 0
    assert list(data.split("test")[-5:-1]) == [0, 0, 0, data.vocab.id("。")]
    assert meta["splits"]["train"]["unknown"] == 0 and meta["coverage"] == 1
    assert all(meta["splits"][s]["chars"] == meta["splits"][s]["tokens"] for s in ("train", "val"))


def test_word_level_has_a_default_cap_and_counts_characters(tmp_path, pfr_slice):
    from textgen.data.prepare import WORD_MAX_VOCAB

    meta = _prep(tmp_path, [pfr_slice], "w", level="word")
    assert meta["config"]["max_vocab"] == WORD_MAX_VOCAB
    capped = _prep(tmp_path, [pfr_slice], "c", level="word", max_vocab=500)
    assert capped["vocab_size"] == 500 and capped["splits"]["train"]["unknown"] > 0
    for s in ("train", "val", "test"):
        split = capped["splits"][s]
        assert split["chars"] > split["tokens"]  # words are longer than one character
        assert split["unknown_chars"] >= split["unknown"]
        # the characters are those of the text, whatever the vocabulary
        assert split["chars"] == meta["splits"][s]["chars"]


# ----------------------------------------------------------------- bad corpus files

GOOD = "人民日报新年社论。\n第二段。\n" * 30


def _binary(p):
    p.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))


def _mixed(p):
    p.write_bytes(GOOD.encode("utf-8") + GOOD.encode("gbk"))


def _truncated(p):
    p.write_bytes(GOOD.encode("utf-8") + "中".encode()[:2])


def _empty(p):
    p.write_bytes(b"")


def _sparse(p):
    with open(p, "wb") as f:  # 2 GB of holes: no disk used, reads as NUL bytes
        f.truncate(2 * 1024**3)


CASES = [
    ("binary.txt", _binary, r"binary\.txt: binary data \(NUL byte at byte offset 7\)"),
    (
        "mixed.txt",
        _mixed,
        r"mixed\.txt: cannot decode: not UTF-8 \(invalid byte at offset \d+\) and not GB18030",
    ),
    ("cut.txt", _truncated, r"cut\.txt: cannot decode: not UTF-8 \(invalid byte at offset 1230\)"),
    ("zero.txt", _empty, r"zero\.txt: file is empty \(0 bytes\)"),
    ("sparse.txt", _sparse, r"sparse\.txt: binary data \(NUL byte at byte offset 0\)"),
]


@pytest.mark.parametrize(("name", "make", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_corpus_files(tmp_path, name, make, message):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.txt").write_text(GOOD, encoding="utf-8")
    make(src / name)
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=message):
        prepare(PrepareConfig(sources=[str(src)], out=str(out)), progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"in"}  # no output, no temp folder


def test_folder_without_text(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(CorpusError, match="holds no text files"):
        prepare(
            PrepareConfig(sources=[str(tmp_path / "in")], out=str(tmp_path / "out")), progress=False
        )
    assert not (tmp_path / "out").exists()
