"""Decode steps: the fast LSTM path against the model, int8's error and batch independence."""

from __future__ import annotations

import math

import pytest
import torch

from textgen.inference.decoder import (
    LSTMDecoder,
    ModelDecoder,
    choose_precision,
    int8_available,
    make_decoder,
)
from textgen.model.charlm import CharLM
from textgen.model.checkpoint import default_checkpoint, load_model
from textgen.model.config import ModelConfig

needs_int8 = pytest.mark.skipif(not int8_available(), reason="no fbgemm/x86 int8 engine")


def _model(layers: int, softmax: str, cell: str = "lstm") -> CharLM:
    torch.manual_seed(layers)
    cfg = ModelConfig(
        vocab_size=300,
        cell=cell,
        embed_dim=16,
        hidden_size=64,
        num_layers=layers,
        softmax=softmax,
        cutoffs=(50, 150) if softmax == "adaptive" else (),
    )
    return CharLM(cfg).eval()


def _run(decoder, model: CharLM, ids: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Log-probs of ``steps`` decode steps feeding ``ids[:, t]``, from a prefilled state."""
    with torch.inference_mode():
        _, state = model(ids[:, :3])
        out = []
        for t in range(3, 3 + steps):
            logp, state = decoder.step(ids[:, t], state)
            out.append(logp)
    return out


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_fp32_fast_path_equals_the_model(layers, softmax):
    model = _model(layers, softmax)
    ids = torch.randint(1, 300, (4, 12))
    fast = _run(LSTMDecoder(model, "fp32"), model, ids, 8)
    plain = _run(ModelDecoder(model), model, ids, 8)
    for a, b in zip(fast, plain, strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
        assert torch.allclose(a.exp().sum(1), torch.ones(4), atol=1e-4)


@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_bf16_is_close_to_the_model(softmax):
    model = _model(2, softmax)
    ids = torch.randint(1, 300, (4, 12))
    fast = _run(LSTMDecoder(model, "bf16"), model, ids, 8)
    plain = _run(ModelDecoder(model), model, ids, 8)
    for a, b in zip(fast, plain, strict=True):
        assert (a.exp() - b.exp()).abs().max() < 0.02


@needs_int8
@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_int8_is_close_and_every_row_is_independent_of_the_batch(softmax):
    model = _model(2, softmax)
    ids = torch.randint(1, 300, (6, 12))
    int8 = LSTMDecoder(model, "int8")
    batched = _run(int8, model, ids, 8)
    plain = _run(ModelDecoder(model), model, ids, 8)
    for a, b in zip(batched, plain, strict=True):
        assert (a.exp() - b.exp()).abs().max() < 0.02  # probabilities within 2 points
    for row in range(6):  # alone, or among other rows: exactly the same numbers
        alone = _run(int8, model, ids[row : row + 1], 8)
        assert all(torch.equal(a[row : row + 1], b) for a, b in zip(batched, alone, strict=True))


@needs_int8
def test_int8_costs_the_bundled_model_under_a_hundredth_of_a_bit(prepared):
    model, vocab, _ = load_model(default_checkpoint())
    from textgen.data.dataset import PreparedCorpus
    from textgen.data.tokenizer import remap_table

    corpus = PreparedCorpus.open(prepared)
    ids = torch.from_numpy(remap_table(corpus.vocab, vocab)[corpus.split("train")].astype("int64"))
    streams = ids[: 8 * 300].view(8, 300)

    def bits(decoder) -> float:
        nll = 0.0
        with torch.inference_mode():
            state = model.init_state(8)
            for t in range(299):
                logp, state = decoder.step(streams[:, t], state)
                nll -= float(logp.gather(1, streams[:, t + 1, None]).sum())
        return nll / (8 * 299) / math.log(2)

    fp32, int8 = bits(ModelDecoder(model)), bits(LSTMDecoder(model, "int8"))
    assert 1 < fp32 < 9 and abs(int8 - fp32) < 0.01, (fp32, int8)


def test_choice_and_clear_errors():
    cpu = torch.device("cpu")
    assert choose_precision("fp32", cpu) == "fp32"
    if int8_available():
        assert choose_precision("auto", cpu) == "int8"
    with pytest.raises(ValueError, match="precision must be one of .*got 'int4'"):
        choose_precision("int4", cpu)
    lstm = _model(1, "full")
    assert isinstance(make_decoder(lstm, "fp32"), ModelDecoder)  # the model's path is faster
    assert make_decoder(lstm, "bf16").precision == "bf16"
    gru = _model(1, "full", cell="gru")
    assert isinstance(make_decoder(gru, "auto"), ModelDecoder)  # no fast path for a GRU
    with pytest.raises(ValueError, match="needs an LSTM model on CPU; this one is a gru"):
        make_decoder(gru, "bf16")
