"""Config fields that carry their own help text: one source for a setting's default, its
validation (in the config's ``__post_init__``) and its command-line flag.

``opt(default, help)`` declares a dataclass field; :func:`flags` lists a config's fields that
have help, as (flag, field name, type, help) for argparse. Field ``num_layers`` is ``--layers``;
every other field ``name`` is ``--name`` with dashes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

FLAG_NAMES = {"num_layers": "--layers"}
TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def opt(default: Any, help_text: str) -> Any:
    """A dataclass field with a default and the help text its flag shows."""
    return dataclasses.field(default=default, metadata={"help": help_text})


def flags(config_cls: type) -> Iterator[tuple[str, str, type, str]]:
    """(flag, field name, type, help) of every field of ``config_cls`` declared with help."""
    for f in dataclasses.fields(config_cls):
        if "help" not in f.metadata:
            continue
        flag = FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        yield flag, f.name, TYPES[str(f.type)], f.metadata["help"]
