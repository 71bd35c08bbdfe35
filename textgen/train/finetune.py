"""Fine-tuning: start `textgen train` from a trained model on another corpus (``--init-from``).

The base model's vocabulary is kept and the new corpus's tokens it lacks are appended, so
every old id keeps its rows bit for bit and the fine-tuned model still accepts everything the
base model did. New rows are initialised by one rule:

* input embedding: a new character whose other-script form (OpenCC: Traditional <->
  Simplified) is in the base vocabulary starts from that character's row (``覺`` from
  ``觉``); any other new token from the mean of the old rows;
* output rows (the full softmax's decoder, or the adaptive softmax's last tail cluster, which
  new ids join): the mean of the old rows of that matrix, so a new token starts as an
  "average" token of its cluster rather than a random one.

The architecture comes from the base checkpoint: a model flag that disagrees is an error
(the regularisers in MAY_CHANGE may change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from textgen.data.dataset import PreparedCorpus
from textgen.data.tokenizer import Vocab, extend
from textgen.model import checkpoint
from textgen.model.charlm import CharLM
from textgen.model.config import ModelConfig

# the regularisers
MAY_CHANGE = ("dropout", "input_dropout", "dropout_mask", "embed_dropout", "weight_drop")


def plan(
    path: str | Path, corpus: PreparedCorpus, model_settings: dict[str, Any]
) -> tuple[ModelConfig, Vocab, dict[str, Any]]:
    """The model config, extended vocabulary and starting weights for fine-tuning on ``corpus``.

    ``model_settings``: model fields the user set (flags or TOML); each must agree with the
    base model's, except :data:`MAY_CHANGE`. Raises ``CheckpointError`` (a ValueError) for a
    file that is not a checkpoint and ValueError for a level, normalisation or flag conflict.
    """
    resolved = checkpoint.resolve(path)
    ckpt = checkpoint.load(resolved)
    base_vocab = Vocab.from_dict(ckpt["tokenizer"]["vocab"])
    _check_compatible(resolved, ckpt, base_vocab, corpus)
    base_cfg = ModelConfig.from_dict(ckpt["model_config"])
    _check_settings(resolved, base_cfg, model_settings)
    vocab = extend(base_vocab, corpus.vocab)
    d = base_cfg.to_dict()
    if base_cfg.softmax == "adaptive":  # pin the clusters: new ids join the last one
        d["cutoffs"] = list(base_cfg.resolved_cutoffs())
    d.update({k: v for k, v in model_settings.items() if k in MAY_CHANGE})
    cfg = ModelConfig.from_dict({**d, "vocab_size": len(vocab)})
    state = extend_state(checkpoint.inference_weights(ckpt), CharLM(cfg), base_vocab, vocab)
    origin = {
        "path": str(resolved),
        "sha256": checkpoint.sha256(resolved),
        "step": ckpt.get("step"),
        "base_vocab_size": len(base_vocab),
        "new_tokens": len(vocab) - len(base_vocab),
    }
    return cfg, vocab, {"model": state, "from": origin}


def _check_compatible(
    path: Path, ckpt: dict[str, Any], base: Vocab, corpus: PreparedCorpus
) -> None:
    level = corpus.vocab.level
    if base.level != level:
        raise ValueError(
            f"--init-from {path} is a {base.level}-level model and {corpus.path} a {level}-level "
            f"corpus; prepare the corpus with --level {base.level}"
        )
    ours = ckpt["tokenizer"]["normalization"].get("name")
    theirs = corpus.meta["normalization"].get("name")
    if ours != theirs:
        raise ValueError(
            f"--init-from {path} was normalised with {ours!r}, {corpus.path} with {theirs!r}"
        )


def _check_settings(path: Path, base: ModelConfig, settings: dict[str, Any]) -> None:
    for name, value in settings.items():
        if name in MAY_CHANGE or name == "vocab_size":
            continue
        have = getattr(base, name)
        if (list(have) if isinstance(have, tuple) else have) != value:
            raise ValueError(
                f"model setting {name}={value!r} conflicts with --init-from {path}, whose "
                f"{name} is {have!r}: fine-tuning keeps the base model's architecture "
                f"(leave {name} out)"
            )


def extend_state(
    old: dict[str, Tensor], model: CharLM, base: Vocab, vocab: Vocab
) -> dict[str, Tensor]:
    """``old`` weights in ``model``'s shapes: rows appended where the vocabulary grew."""
    counterpart = _counterparts(base, vocab)
    out = {}
    for name, template in model.state_dict().items():
        t = old[name].float()
        grow = template.shape[0] - t.shape[0] if template.dim() else 0
        if grow < 0 or template.shape[1:] != t.shape[1:]:
            raise ValueError(f"cannot extend {name}: {tuple(t.shape)} -> {tuple(template.shape)}")
        if grow:
            rows = t.mean(0, keepdim=True).expand(grow, *t.shape[1:]).clone()
            if name == "embed.weight":
                for i, j in counterpart.items():
                    rows[i - len(base)] = t[j]
            t = torch.cat([t, rows])
        out[name] = t
    if model.config.tie_weights:  # one Parameter: the decoder is the embedding
        out["decoder.weight"] = out["embed.weight"]
    return out


def _counterparts(base: Vocab, vocab: Vocab) -> dict[int, int]:
    """New id -> base id of the same character in the other script, where there is one."""
    from textgen.data.script import to_script

    found = {}
    for i in range(len(base), len(vocab)):
        token = vocab.tokens[i]
        for script in ("simplified", "traditional"):
            other = to_script(token, script)
            if other != token and other in base:
                found[i] = base.id(other)
                break
    return found
