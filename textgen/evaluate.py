"""Bits per character, perplexity and unknown rate of a model on a token stream."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from textgen import checkpoint
from textgen.data import PreparedCorpus
from textgen.model import CharLM, ModelConfig
from textgen.normalize import get_normalizer
from textgen.tokenizer import Vocab, make_tokenizer


@torch.no_grad()
def evaluate_ids(
    model: CharLM,
    ids: np.ndarray,
    vocab: Vocab,
    batch_size: int = 8,
    seq_len: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Score ``ids`` as B parallel streams with carried state, in float32.

    Each stream's first token has no context and is not scored. Bits per character divide by
    the characters of the scored tokens (the same as per token at character level).
    """
    n = len(ids)
    batch_size = max(1, min(batch_size, (n - 1) // 2))
    stream_len = n // batch_size
    if stream_len < 2:
        raise ValueError(f"need at least 2 tokens to evaluate, got {n}")
    was_training = model.training
    model.eval()
    streams = np.asarray(ids[: batch_size * stream_len], dtype=np.int64).reshape(
        batch_size, stream_len
    )
    lengths = np.array([len(t) for t in vocab.tokens], dtype=np.int64)
    state = model.init_state(batch_size, device)
    nll = 0.0
    chars = 0
    for pos in range(0, stream_len - 1, seq_len):
        chunk = torch.from_numpy(streams[:, pos : pos + seq_len + 1]).to(device)
        x, y = chunk[:, :-1], chunk[:, 1:]  # (B, T)
        features, state = model(x, state)
        nll += float(model.loss(features, y)) * y.numel()
        chars += int(lengths[y.cpu().numpy()].sum())
    model.train(was_training)
    scored = batch_size * (stream_len - 1)
    unknown = int(np.count_nonzero(np.asarray(ids) == vocab.unk_id))
    return {
        "bpc": nll / math.log(2) / chars,
        "perplexity": math.exp(nll / scored),  # per token
        "unknown_rate": unknown / n,
        "tokens": scored,
    }


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[CharLM, Vocab, dict]:
    """A model, its vocabulary and the checkpoint dict, from a checkpoint file or run folder."""
    ckpt = checkpoint.load(path)
    model = CharLM(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    model.to(device).eval()
    return model, Vocab.from_dict(ckpt["tokenizer"]["vocab"]), ckpt


def evaluate_checkpoint(
    path: str | Path,
    data: str | Path | None = None,
    split: str = "val",
    text_file: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """`textgen eval`: a checkpoint on a prepared split, or on a text file normalised its way."""
    model, vocab, ckpt = load_model(path, device)
    if text_file is not None:
        normalize = get_normalizer(ckpt["tokenizer"]["normalization"]["name"])
        text = normalize(Path(text_file).read_text(encoding="utf-8"))
        ids = make_tokenizer(vocab).encode(text)
    else:
        corpus = PreparedCorpus.open(data)
        if corpus.vocab.tokens != vocab.tokens:
            raise ValueError(f"{data} was prepared with another vocabulary than {path}")
        ids = corpus.split(split)
    return evaluate_ids(model, ids, vocab, device=device)
