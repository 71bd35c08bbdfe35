"""Bits per character, perplexity and unknown rate of a model on a token stream."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from textgen.data.dataset import PreparedCorpus
from textgen.data.normalize import get_normalizer
from textgen.data.tokenizer import Vocab, char_lengths, make_tokenizer, remap_table
from textgen.model.charlm import CharLM
from textgen.model.checkpoint import load_model


@torch.no_grad()
def evaluate_ids(
    model: CharLM,
    ids: np.ndarray,
    vocab: Vocab,
    batch_size: int = 8,
    seq_len: int = 256,
    device: str | torch.device = "cpu",
    token_chars: np.ndarray | None = None,
    lut: np.ndarray | None = None,
) -> dict[str, float]:
    """Score ``ids`` as B parallel streams with carried state, in float32.

    Each stream's first token has no context and is not scored. Bits per character divide the
    bits by the characters of the scored tokens (``token_chars``: characters per id, see
    :meth:`PreparedCorpus.token_chars`; default :func:`char_lengths`: each token's length, ``<unk>`` one), so a
    word model and a character model compare directly; ``bits_per_token`` is beside it.
    ``lut`` maps the ids of ``ids`` (and ``token_chars``) to the model's vocabulary.
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
    lengths = token_chars if token_chars is not None else char_lengths(vocab)
    chars = float(lengths[streams[:, 1:]].sum())  # the scored positions
    if lut is not None:
        streams = lut[streams].astype(np.int64)
    state = model.init_state(batch_size, device)
    nll = 0.0
    for pos in range(0, stream_len - 1, seq_len):
        chunk = torch.from_numpy(streams[:, pos : pos + seq_len + 1]).to(device)
        x, y = chunk[:, :-1], chunk[:, 1:]  # (B, T)
        features, state = model(x, state)
        nll += float(model.loss(features, y)) * y.numel()
    model.train(was_training)
    scored = batch_size * (stream_len - 1)
    unknown = int(np.count_nonzero(streams == vocab.unk_id))
    return {
        "bpc": nll / math.log(2) / chars,
        "bits_per_token": nll / math.log(2) / scored,
        "perplexity": math.exp(nll / scored),  # per token
        "unknown_rate": unknown / streams.size,
        "tokens": scored,
        "chars": round(chars),
    }


def evaluate_checkpoint(
    path: str | Path,
    data: str | Path | None = None,
    split: str = "val",
    text_file: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """`textgen eval`: a checkpoint on a prepared split, or on a text file normalised its way.

    A text file in the other script (Traditional for a Simplified model, or the reverse) is
    converted with OpenCC first. A corpus prepared with another vocabulary is mapped onto the
    model's by token; what the model lacks becomes ``<unk>`` (and counts as unknown).
    """
    from textgen.data.script import model_script, to_model_script

    model, vocab, ckpt = load_model(path, device)
    if text_file is not None:
        normalize = get_normalizer(ckpt["tokenizer"]["normalization"]["name"])
        raw = Path(text_file).read_text(encoding="utf-8")
        text = normalize(to_model_script(raw, model_script(ckpt, vocab), vocab))
        tokenizer = make_tokenizer(vocab)
        ids = tokenizer.encode(text)
        unknown = [len(t) for t in tokenizer.split(text) if t not in vocab]
        # an unknown word stands for its own characters
        lengths = char_lengths(vocab, sum(unknown) / len(unknown) if unknown else 1.0)
        return evaluate_ids(model, ids, vocab, device=device, token_chars=lengths)
    if data is None:
        raise ValueError("give a prepared corpus (--data) or a text file (--text)")
    corpus = PreparedCorpus.open(data)
    if corpus.vocab.level != vocab.level:
        raise ValueError(
            f"{data} is a {corpus.vocab.level}-level corpus and {path} a {vocab.level}-level model"
        )
    same = corpus.vocab.tokens == vocab.tokens
    lut = None if same else remap_table(corpus.vocab, vocab)
    return evaluate_ids(
        model,
        corpus.split(split),
        vocab,
        device=device,
        token_chars=corpus.token_chars(split),
        lut=lut,
    )
