"""One decode step for every sequence in flight, as fast as this machine allows.

Decoding feeds one token per sequence and step, so each step is a matrix-*vector* product
per sequence: it reads every recurrent and output weight once and is bound by memory, not
arithmetic. :class:`LSTMDecoder` cuts what a step reads and computes:

* the first layer's input projection of every vocabulary entry is precomputed once
  (``embedding @ W_ih + b_ih + b_hh``, one row per id): the step gathers a row instead of
  running the embedding and a GEMM;
* in ``int8`` the recurrent and output matrices are quantized per output channel and run
  through PyTorch's dynamic int8 GEMMs (fbgemm/x86: activations quantized on the fly), a
  quarter of the float32 bytes; the gate arithmetic, the state and every log-softmax stay
  in float32;
* in ``bf16`` the matrices are stored and multiplied in bfloat16 (for CPUs whose bf16
  GEMMs beat float32 ones, and CUDA).

The prefill of a prompt stays on the float32 model (a whole sequence is a real GEMM), so only
the decode steps are approximated; ``benchmarks/serve.py`` prints the test-split bits per
character of both paths. :func:`choose_precision` picks the fastest path this machine offers
(README "Serving" has the measurements); ``--precision`` overrides it.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textgen.hardware import cpu_bf16_pays
from textgen.inference.limits import DECODE_PRECISIONS
from textgen.model.charlm import CharLM
from textgen.model.state import State

log = logging.getLogger(__name__)
PRECISIONS = DECODE_PRECISIONS
# oneDNN has a fixed cost per call but runs long sequences faster: prompts from this length
# on are prefilled with it; float32 decode steps never use it, bf16 ones always (CPU bf16
# GEMMs need it). Figures: docs/architecture.md.
ONEDNN_MIN_PROMPT = 32


def onednn(enabled: bool):
    """oneDNN on or off for a block; only that flag is touched (tf32 flags warn on CPU)."""
    return torch.backends.mkldnn.flags(
        enabled=enabled, deterministic=None, allow_tf32=None, fp32_precision=None
    )


def int8_available() -> bool:
    """True when this torch has a dynamic int8 GEMM engine for this CPU."""
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


def choose_precision(precision: str, device: torch.device) -> str:
    """``auto``: int8 on a CPU with an int8 engine, else bf16 where it pays, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and (device.type != "cpu" or not int8_available()):
        raise ValueError("precision 'int8' needs a CPU with PyTorch's fbgemm/x86 int8 engine")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if int8_available():
        return "int8"
    return "bf16" if cpu_bf16_pays() else "fp32"


def _int8_linear(linear: nn.Linear) -> nn.Module:
    """``linear`` as a dynamically quantized int8 module (weights per output channel)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's eager quantization warns it is deprecated
        warnings.simplefilter("ignore")
        wrapped = quantize_dynamic(
            nn.Sequential(linear), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
    return wrapped[0]


class _Linear:
    """``x @ W.T + b`` in the decoder's precision; takes and returns float32.

    ``bounded``: the input lies in (-1, 1) (an LSTM's h), which int8 needs. Dynamic int8
    quantizes the activations over the whole batch, from its min and max: an anchor row
    holding -1 and 1 pins that range to (-1, 1) whatever the other rows are, so the integer
    GEMM gives every sequence exactly the same result in any batch (same seed, same text).
    """

    def __init__(
        self, weight: Tensor, bias: Tensor | None, precision: str, bounded: bool = True
    ) -> None:
        self.precision = "fp32" if precision == "int8" and not bounded else precision
        if self.precision == "int8":
            lin = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None)
            with torch.no_grad():
                lin.weight.copy_(weight)
                if bias is not None:
                    lin.bias.copy_(bias)
            self.q = _int8_linear(lin)
            self.anchor = torch.zeros(1, weight.size(1))
            self.anchor[0, 0], self.anchor[0, -1] = 1.0, -1.0
        else:
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self.w = weight.detach().to(dtype).contiguous()
            self.b = None if bias is None else bias.detach().to(dtype)

    def __call__(self, x: Tensor) -> Tensor:
        if self.precision == "int8":
            return self.q(torch.cat([x, self.anchor]))[:-1]
        return F.linear(x.to(self.w.dtype), self.w, self.b).float()


class LSTMDecoder:
    """Single-token decode steps of an LSTM :class:`CharLM`, in ``precision``.

    Per layer and step: the recurrent GEMM on the carried h, plus the input term (a row of
    the precomputed table for the first layer, a GEMM on the layer below's h otherwise);
    then the gates, with the weights' rows reordered at build time so that the three sigmoid
    gates are one block and the tanh gate another. The output side is one GEMM: the softmax
    head and, for an adaptive softmax, each tail cluster's projection folded into its output
    matrix, stacked into one matrix on the top layer's h.
    """

    def __init__(self, model: CharLM, precision: str = "int8") -> None:
        if model.config.cell != "lstm":
            raise ValueError(f"LSTMDecoder needs an LSTM model, got cell {model.config.cell!r}")
        self.model, self.precision = model, precision
        rnn, n_layers = model.rnn, model.config.num_layers
        hid = model.config.hidden_size
        # PyTorch's gate order is i, f, g, o; reorder to i, f, o | g
        order = torch.cat(
            [
                torch.arange(0, 2 * hid),
                torch.arange(3 * hid, 4 * hid),
                torch.arange(2 * hid, 3 * hid),
            ]
        )
        self.hid = hid
        with torch.no_grad():
            w = {n: p.detach().float() for n, p in rnn.named_parameters()}
            table = F.linear(model.embed.weight.float(), w["weight_ih_l0"])
            self.table = (table + w["bias_ih_l0"] + w["bias_hh_l0"])[:, order].contiguous()
            self.w_hh = [
                _Linear(w[f"weight_hh_l{i}"][order], None, precision) for i in range(n_layers)
            ]
            self.w_ih = [
                _Linear(
                    w[f"weight_ih_l{i}"][order],
                    (w[f"bias_ih_l{i}"] + w[f"bias_hh_l{i}"])[order],
                    precision,
                )
                for i in range(1, n_layers)
            ]
            self._build_head(model)

    def _build_head(self, model: CharLM) -> None:
        if model.decoder is not None:
            self.sizes = [model.decoder.out_features]
            dec_bias = model.decoder.bias
            self.out = _Linear(
                model.decoder.weight.detach().float(),
                None if dec_bias is None else dec_bias.detach().float(),
                self.precision,
            )
            return
        asm = model.adaptive
        assert asm is not None
        weights: list[Tensor] = [asm.head.weight.detach().float()]
        for tail in asm.tail:  # out(proj(h)) = (W_out @ W_proj) h: one matrix on h
            proj, out = (
                m.weight.detach().float() for m in tail.children() if isinstance(m, nn.Linear)
            )
            weights.append(out @ proj)
        self.sizes = [w.size(0) for w in weights]
        bias: Tensor | None = None
        if asm.head.bias is not None:  # the tails have no bias
            bias = torch.cat([asm.head.bias.detach().float(), torch.zeros(sum(self.sizes[1:]))])
        self.out = _Linear(torch.cat(weights), bias, self.precision)
        self.short = asm.shortlist_size

    def log_probs(self, h: Tensor) -> Tensor:
        """Top-layer h (B, H) -> float32 log-probabilities (B, V)."""
        scores = self.out(h)
        if len(self.sizes) == 1:
            return F.log_softmax(scores, dim=-1)
        parts = scores.split(self.sizes, dim=1)
        head = F.log_softmax(parts[0], dim=-1)  # (B, shortlist + clusters)
        out = [head[:, : self.short]]
        for i, tail in enumerate(parts[1:]):
            out.append(F.log_softmax(tail, dim=-1) + head[:, self.short + i, None])
        return torch.cat(out, dim=1)

    @torch.inference_mode()
    def prefill(self, ids: Tensor) -> tuple[Tensor, State]:
        """A prompt ids (T,) from the zero state -> (log-probs (1, V) after it, state).

        A short prompt runs through the decode steps (cheaper than a call of the fused
        kernel for a few tokens); a long one through the float32 model in one call.
        """
        if len(ids) >= ONEDNN_MIN_PROMPT:
            return _model_prefill(self.model, ids)
        state: State = self.model.init_state(1)
        h = state[0][-1]
        with onednn(self.precision == "bf16"):
            for t in range(len(ids)):
                h, state = self._recur(ids[t : t + 1], state)
            return self.log_probs(h), state

    @torch.inference_mode()
    def step(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        """ids (B,) long, state (h, c) each (L, B, H) -> (log-probs (B, V), new state)."""
        with onednn(self.precision == "bf16"):
            h, new_state = self._recur(ids, state)
            return self.log_probs(h), new_state

    def _recur(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        """One step of the recurrence: (top layer's h (B, H), new state)."""
        assert isinstance(state, tuple)
        h_all, c_all = state
        hs, cs = [], []
        x = h_all[0]
        k = 3 * self.hid
        for layer in range(len(self.w_hh)):
            gates = self.w_hh[layer](h_all[layer])  # (B, 4H): i, f, o | g
            if layer == 0:
                gates += F.embedding(ids, self.table)
            else:
                gates += self.w_ih[layer - 1](x)
            sig = torch.sigmoid(gates[:, :k])
            c = sig[:, self.hid : 2 * self.hid] * c_all[layer]
            c += sig[:, : self.hid] * torch.tanh(gates[:, k:])
            x = sig[:, 2 * self.hid :] * torch.tanh(c)
            hs.append(x)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))


def _model_prefill(model: CharLM, ids: Tensor) -> tuple[Tensor, State]:
    """The whole prompt in one model call, oneDNN on for a long one."""
    with onednn(len(ids) >= ONEDNN_MIN_PROMPT):
        features, state = model(ids[None])  # (1, T, H)
        return model.log_probs(features[:, -1:])[:, 0], state


class ModelDecoder:
    """Decode steps through the model itself (any cell, any device): the float32 path."""

    def __init__(self, model: CharLM) -> None:
        self.model, self.precision = model, "fp32"

    @torch.inference_mode()
    def prefill(self, ids: Tensor) -> tuple[Tensor, State]:
        """A prompt ids (T,) -> (log-probs (1, V) after it, state), in one model call."""
        return _model_prefill(self.model, ids)

    @torch.inference_mode()
    def step(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        with onednn(False):  # one-token steps are 2-3x faster without it
            features, new_state = self.model(ids[:, None], state)  # (B, 1, H)
            return self.model.log_probs(features)[:, 0], new_state


Decoder = LSTMDecoder | ModelDecoder


def make_decoder(model: CharLM, precision: str = "auto") -> Decoder:
    """The fastest decoder for ``model`` here, or the one ``precision`` names."""
    device = model.embed.weight.device
    chosen = choose_precision(precision, device)
    if model.config.cell == "lstm" and device.type == "cpu" and chosen != "fp32":
        decoder: Decoder = LSTMDecoder(model, chosen)
    elif chosen == "fp32" or precision == "auto":  # float32: the model's own path is faster
        decoder = ModelDecoder(model)
    else:
        raise ValueError(
            f"precision {precision!r} decoding needs an LSTM model on CPU; this one is a "
            f"{model.config.cell} on {device.type}: use --precision fp32 or auto"
        )
    log.info("decoding with %s (%s)", type(decoder).__name__, decoder.precision)
    return decoder
