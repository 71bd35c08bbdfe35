"""Checkpoints: self-describing, safe to load, written atomically.

A checkpoint is a dict of plain types and tensors only, so ``torch.load(weights_only=True)``
reads it and nothing is ever unpickled. It is written to a temporary file in the same folder,
fsynced, then ``os.replace``d over the old one: a kill at any moment leaves the last good
checkpoint intact.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import secrets
import zipfile
from pathlib import Path
from typing import Any

import torch

import textgen
from textgen.data.tokenizer import Vocab
from textgen.durable import fsync_dir
from textgen.model.charlm import CharLM
from textgen.model.config import ModelConfig

FORMAT = "textgen-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def _create_temp(path: Path) -> tuple[int, str]:
    """A new, exclusive temp file beside ``path``, mode 0666 less the umask (mkstemp's 0600
    would leave an exported model unreadable to other users)."""
    while True:
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def save(obj: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a temp file beside `path`, fsync, rename, fsync the folder.

    On any failure (a full disk, say) the temp file is removed and the previous file at
    `path` is untouched; the error propagates with the path named.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, **obj}
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(
                exc.errno,
                f"could not save checkpoint {path} ({exc.strerror}); "
                "the previous checkpoint there is intact",
            ) from exc
        raise
    fsync_dir(path.parent)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (weights_only=True, never falling back) and check it is ours."""
    path = resolve(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a torn one has no index
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated?)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).splitlines()
        why = next((ln.strip() for ln in lines if "Unsupported global" in ln), lines[0])
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain types, and "
            f"textgen never unpickles arbitrary objects ({why})"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt or truncated?): {exc}"
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a textgen checkpoint (no format marker)")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {obj['format_version']} is newer than this textgen "
            f"understands ({FORMAT_VERSION}); upgrade textgen"
        )
    return obj


def resolve(path: str | Path) -> Path:
    """A checkpoint file, a run folder (its best.pt, else last.pt, else model.pt), or
    "default": the bundled model (see :func:`default_checkpoint`)."""
    if str(path) == "default":
        return default_checkpoint()
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt", "model.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: folder holds no checkpoint (best.pt, last.pt or model.pt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    return path


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())


TRAINING_ONLY = (
    "optimizer",
    "scaler",
    "rng",
    "hidden_state",
    "data_position",
    "health",
    "averaged_model",
    "averaged_updates",
)


def inference_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to generate, evaluate, export and fine-tune with: the averaged ones of a
    run trained with --ema, else the model's own."""
    averaged: dict[str, torch.Tensor] | None = ckpt.get("averaged_model")
    return averaged if averaged is not None else ckpt["model"]


def export_inference(src: str | Path, dst: str | Path, half: bool = True) -> dict[str, Any]:
    """An inference-only copy: no optimizer or resume state; fp16 weights when `half`.

    Loaders cast weights back to float32, so fp16 only rounds the stored values.
    """
    ckpt = load(src)
    out = {
        k: v
        for k, v in ckpt.items()
        if k not in TRAINING_ONLY and k not in ("format", "format_version")
    }
    weights = inference_weights(ckpt)
    out["model"] = {
        k: v.half() if half and v.is_floating_point() else v for k, v in weights.items()
    }
    out["kind"] = "inference"
    out["exported_from"] = {"path": str(resolve(src)), "sha256": sha256(resolve(src)), "half": half}
    save(out, dst)
    return out


def default_checkpoint() -> Path:
    """The checkpoint used when none is given.

    ``TEXTGEN_CHECKPOINT`` if set, else the model bundled with the package
    (``textgen/default_model/model.pt``), else ``checkpoints/default/model.pt`` of a source
    checkout.
    """
    env = os.environ.get("TEXTGEN_CHECKPOINT")
    if env and env != "default":
        return resolve(env)
    package = Path(textgen.__file__).resolve().parent
    for path in (
        package / "default_model" / "model.pt",
        package.parent / "checkpoints" / "default" / "model.pt",
    ):
        if path.is_file():
            return path
    raise FileNotFoundError(
        "no checkpoint given and no bundled default model found "
        f"(looked in {package / 'default_model'} and {package.parent / 'checkpoints/default'}): "
        "pass --checkpoint PATH, set TEXTGEN_CHECKPOINT, or train one with "
        "`textgen train --data DIR --out DIR`"
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[CharLM, Vocab, dict]:
    """A model, its vocabulary and the checkpoint dict, from a checkpoint file or run folder."""
    ckpt = load(path)
    model = CharLM(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict({k: v.float() for k, v in inference_weights(ckpt).items()})
    model.to(device).eval()
    return model, Vocab.from_dict(ckpt["tokenizer"]["vocab"]), ckpt
