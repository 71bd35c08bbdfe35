import codecs

import pytest

from textgen.data.corpus import (
    CorpusError,
    find_files,
    inspect,
    iter_blocks,
    looks_like_pfr,
    parse_pfr_line,
    pfr_to_text,
)


def test_pfr_words_hand_checked():
    line = "迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w  一九九八年/t  新年/t  讲话/n  （/w  附/v  图片/n  １/m  张/q  ）/w\n"
    assert parse_pfr_line(line) == [
        "迈向",
        "充满",
        "希望",
        "的",
        "新",
        "世纪",
        "——",
        "一九九八年",
        "新年",
        "讲话",
        "（",
        "附",
        "图片",
        "１",
        "张",
        "）",
    ]


def test_pfr_bracketed_compounds_and_article_ids():
    line = "19980101-01-001-002/m  [中国/ns  政府/n]nt  发表/v  [香港/ns  特别/a  行政区/n]ns  声明/n  。/w"
    assert parse_pfr_line(line) == ["中国", "政府", "发表", "香港", "特别", "行政区", "声明", "。"]
    assert pfr_to_text(line) == "中国政府发表香港特别行政区声明。"
    assert parse_pfr_line("[张/nr  三/nr]nr") == ["张", "三"]


def test_pfr_slashes_inside_words():
    assert parse_pfr_line("１／２/m  公里/q") == ["１／２", "公里"]
    assert parse_pfr_line("a/b/c/x") == ["a/b/c"]


def test_exact_raw_text_of_real_lines(corpus_lines):
    lines = corpus_lines(4)
    assert pfr_to_text(lines[0]) == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert pfr_to_text(lines[1]) == "中共中央总书记、国家主席江泽民"
    assert pfr_to_text(lines[2]) == "（一九九七年十二月三十一日）"
    assert pfr_to_text(lines[3]).startswith(
        "１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年新年讲话《"
    )
    # no segmentation spaces survive anywhere in a real slice
    assert all(" " not in pfr_to_text(line) for line in corpus_lines(300))


def test_real_slice_is_detected_as_pfr(pfr_slice):
    src = inspect(pfr_slice)
    assert src.format == "pfr" and src.encoding == "utf-8" and len(src.sha256) == 64
    text = "".join(t for t, _ in iter_blocks(src))
    assert text.startswith("迈向充满希望的新世纪——一九九八年新年讲话（附图片1张）\n中共中央总书记")
    assert "/n" not in text and "  " not in text
    assert not looks_like_pfr("今天天气很好。我们去公园散步吧，好不好？")


@pytest.mark.parametrize(
    ("encoding", "prefix", "expected"),
    [("utf-8", b"", "utf-8"), ("utf-8", codecs.BOM_UTF8, "utf-8-sig"), ("gbk", b"", "gb18030")],
)
def test_encoding_detection(tmp_path, encoding, prefix, expected):
    text = "人民日报社论：新年新气象，１９９８年。\n第二段文字。\n" * 20
    path = tmp_path / "f.txt"
    path.write_bytes(prefix + text.encode(encoding))
    src = inspect(path)
    assert src.encoding == expected and src.format == "text"
    assert "".join(t for t, _ in iter_blocks(src)).startswith(
        "人民日报社论：新年新气象，1998年。\n第二段"
    )


def test_encoding_override(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes("中文".encode("gbk"))
    assert inspect(path, encoding="gbk").encoding == "gbk"
    with pytest.raises(CorpusError, match="not valid utf-8 text at byte offset 0"):
        inspect(path, encoding="utf-8")
    with pytest.raises(CorpusError, match="unknown encoding"):
        inspect(path, encoding="klingon")


def test_binary_invalid_and_empty_files_are_named(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"abc\x00\x01\x02")
    with pytest.raises(CorpusError, match=r"model\.bin: binary data \(NUL byte at byte offset 3\)"):
        inspect(binary)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.txt: file is empty"):
        inspect(empty)
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes("中文".encode() + b"\xff\xfe\xfd" + "中文".encode("gbk"))
    with pytest.raises(
        CorpusError, match=r"mixed\.txt: cannot decode: not UTF-8 \(invalid byte at offset 6\)"
    ):
        inspect(mixed)


def test_find_files(tmp_path):
    (tmp_path / "a.txt").write_text("甲", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("乙", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    assert [p.name for p in find_files([tmp_path])] == ["a.txt", "b.txt"]
    (tmp_path / "none").mkdir()
    with pytest.raises(CorpusError, match="holds no text files"):
        find_files([tmp_path / "none"])
    with pytest.raises(CorpusError, match="no such file"):
        find_files([tmp_path / "missing.txt"])
