"""The one text normalisation shared by the corpus pipeline and by prompts.

The 1998 People's Daily corpus writes digits and Latin letters full-width (``１９９８年``)
while users type ASCII (``1998年``): both must reach the same vocabulary ids. NFKC would do
that, but it also turns Chinese punctuation (``，`` ``：`` ``（``) into ASCII, which changes
how the text reads. So the policy is explicit:

* full-width ASCII letters, digits and symbols become ASCII (``Ａ`` -> ``A``, ``％`` -> ``%``);
* the punctuation a Chinese sentence uses keeps (or gets) its full-width form, whichever form
  was typed: ``,`` ``!`` ``?`` ``:`` ``;`` ``(`` ``)`` -> ``，`` ``！`` ``？`` ``：`` ``；`` ``（`` ``）``;
* runs of spaces, tabs and ideographic spaces become one ASCII space; lines are stripped;
* other control and format characters (including NUL, zero-width spaces, BOMs) are dropped;
* every line break becomes ``\n`` (a paragraph end), and empty lines are dropped.

The policy has a name and version that checkpoints record, so a model always normalises
prompts the way its corpus was normalised.
"""

from __future__ import annotations

import re
import unicodedata

POLICY_NAME = "textgen-zh-v1"

# Punctuation that stays (or becomes) full-width: it is part of written Chinese.
_CJK_PUNCT = {",": "，", "!": "！", "?": "？", ":": "：", ";": "；", "(": "（", ")": "）"}


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for cp in range(0xFF01, 0xFF5F):  # full-width forms of ASCII 0x21..0x7E
        ascii_char = chr(cp - 0xFEE0)
        table[cp] = _CJK_PUNCT.get(ascii_char, ascii_char)
    for ascii_char, wide in _CJK_PUNCT.items():
        table[ord(ascii_char)] = wide
    table[0x3000] = " "  # ideographic space
    table[ord("\t")] = " "
    table[ord("\r")] = "\n"
    for cp in (0x0B, 0x0C, 0x85, 0x2028, 0x2029):  # other line/paragraph separators
        table[cp] = "\n"
    for cp in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0)):
        table.setdefault(cp, None)  # remaining C0/C1 controls: drop
    table[ord("\n")] = "\n"
    for cp in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD):  # zero-width / BOM / soft hyphen
        table[cp] = None
    return table


_TABLE = _build_table()
_SPACES = re.compile(r" {2,}")
_EDGE_SPACES = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{2,}")


def normalize(text: str) -> str:
    """Normalise a block of text (one or many lines) with the textgen policy.

    Idempotent: ``normalize(normalize(x)) == normalize(x)``. Line structure is kept except
    that empty lines are removed; a trailing newline in the input is kept.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFC", text).translate(_TABLE)
    text = _SPACES.sub(" ", text)
    text = _EDGE_SPACES.sub("\n", text)
    text = _BLANK_LINES.sub("\n", text)
    if text.startswith("\n"):
        text = text.lstrip("\n")
    if text.startswith(" "):
        text = text.lstrip(" ")
    if text.endswith(" "):
        text = text.rstrip(" ")
    return text


def describe() -> dict[str, object]:
    """What the policy does, for meta.json and checkpoints."""
    return {
        "name": POLICY_NAME,
        "unicode": "NFC",
        "fullwidth_ascii": "to ASCII, except Chinese punctuation",
        "cjk_punctuation": "".join(_CJK_PUNCT.values()),
        "whitespace": "runs to one space, lines stripped, empty lines dropped",
        "controls": "dropped",
        "paragraph_end": "\\n",
    }


def get_normalizer(name: str):
    """Look a recorded policy up by name (checkpoints store the name)."""
    if name != POLICY_NAME:
        raise ValueError(
            f"unknown normalisation policy {name!r}; this textgen knows {POLICY_NAME!r}"
        )
    return normalize
