"""Bad corpus files and failing checkpoint writes: clear errors, nothing half-written left behind."""

import errno
import os

import pytest
import torch

from textgen.data.corpus import CorpusError
from textgen.data.prepare import PrepareConfig, prepare
from textgen.model import checkpoint

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


def test_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save({"step": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file, not mkstemp's 0600

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", no_space)
    with pytest.raises(
        OSError,
        match="could not save checkpoint .*last.pt .*the previous checkpoint there is intact",
    ):
        checkpoint.save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert checkpoint.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"step": 1, "w": torch.ones(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.load(path)
