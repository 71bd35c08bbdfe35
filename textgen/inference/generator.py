"""Generation from a checkpoint: the :class:`TextGenerator` front end.

A TextGenerator loads everything it needs from a checkpoint path alone (model, vocabulary,
normalisation policy, Chinese script) and hands out :class:`~textgen.inference.engine.Engine`
instances: the server
runs one in a background thread, while :meth:`TextGenerator.stream` and
:meth:`TextGenerator.generate` drive a private one inline for the CLI, the tests and scripts.
Sampling parameters are a :class:`~textgen.inference.sampling.GenerationConfig`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from textgen.data.normalize import get_normalizer
from textgen.data.script import model_script, to_model_script
from textgen.data.tokenizer import Vocab
from textgen.inference.config import GenerationConfig
from textgen.inference.constraints import Constraints
from textgen.inference.decoder import Decoder, ModelDecoder, make_decoder
from textgen.inference.engine import Engine
from textgen.inference.events import Done, Event, Failed, GenerationResult
from textgen.model import checkpoint
from textgen.model.charlm import CharLM
from textgen.model.checkpoint import default_checkpoint, load_model


class TextGenerator:
    """A loaded checkpoint ready to generate. Build it with :meth:`from_checkpoint`."""

    def __init__(self, model: CharLM, vocab: Vocab, ckpt: dict[str, Any], path: Path) -> None:
        self.model, self.vocab, self.path = model.eval(), vocab, path
        self.normalize = get_normalizer(ckpt["tokenizer"]["normalization"]["name"])
        self.sha256 = checkpoint.sha256(path)
        self.script = model_script(ckpt, vocab)  # "simplified", "traditional" or "unknown"
        self.info = {**_describe(ckpt, model, vocab), "script": self.script}
        self.decoder: Decoder = ModelDecoder(self.model)  # from_checkpoint picks the fastest
        # one cache of compiled patterns (and one regex worker) for every engine of this model
        self.constraints = Constraints(vocab, self.to_model_text)

    def to_model_text(self, text: str) -> str:
        """Text as the model reads it: in its script, normalised."""
        return self.normalize(to_model_script(text, self.script, self.vocab))

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | None = None, threads: int = 0, precision: str = "auto"
    ) -> TextGenerator:
        """Load a checkpoint file or run folder (default: :func:`default_checkpoint`).

        ``precision``: how decode steps run (textgen.inference.decoder): ``auto`` picks the
        fastest this machine offers; ``fp32``, ``bf16`` or ``int8`` force one.
        """
        if threads > 0:
            torch.set_num_threads(threads)
        resolved = checkpoint.resolve(path) if path is not None else default_checkpoint()
        model, vocab, ckpt = load_model(resolved)
        gen = cls(model, vocab, ckpt, resolved)
        gen.decoder = make_decoder(gen.model, precision)
        gen.info["precision"] = gen.decoder.precision
        return gen

    @property
    def model_id(self) -> str:
        """A stable name for this model: its file stem and the start of its hash."""
        return f"textgen-{self.path.stem}-{self.sha256[:12]}"

    def engine(self, max_batch: int = 64, max_queue: int = 256, on_step=None) -> Engine:
        return Engine(
            self.model,
            self.vocab,
            self.normalize,
            max_batch,
            max_queue,
            on_step,
            script=self.script,
            decoder=self.decoder,
            constraints=self.constraints,
        )

    def stream(self, prompt: str, config: GenerationConfig | None = None) -> Iterator[Event]:
        """Generate inline, yielding Chunk events as text comes and a final Done event."""
        engine = self.engine(max_batch=max(64, (config or GenerationConfig()).n))
        events: list[Event] = []
        request = engine.request(prompt, config or GenerationConfig(), events.extend, stream=True)
        engine.submit(request)
        try:
            while not request.finished:
                engine.step()
                yield from events
                events.clear()
        finally:
            request.cancel()

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> GenerationResult:
        """Generate and return the finished result."""
        for event in self.stream(prompt, config):
            if isinstance(event, Done):
                return event.result
            if isinstance(event, Failed):
                raise RuntimeError(event.message)
        raise RuntimeError("generation ended without a result")  # unreachable: Done is last


def _describe(ckpt: dict[str, Any], model: CharLM, vocab: Vocab) -> dict[str, Any]:
    """What the checkpoint says about itself, for `GET /v1/model` and `textgen generate`."""
    health = ckpt.get("health") or {}
    return {
        "model_config": ckpt["model_config"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(vocab),
        "level": vocab.level,
        "normalization": ckpt["tokenizer"]["normalization"].get("name"),
        "step": ckpt.get("step"),
        "kind": ckpt.get("kind"),
        "textgen_version": ckpt.get("textgen_version"),
        "metrics": {
            "val_bpc": ckpt.get("val_bpc"),
            "best_val_bpc": ckpt.get("best_val_bpc"),
            "clipped_steps": health.get("clipped"),
            "skipped_steps": health.get("skipped"),
        },
    }
