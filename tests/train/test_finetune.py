"""Fine-tuning (`textgen train --init-from`): vocabulary extension, errors, resume."""

import pytest
import torch

from textgen.data.dataset import PreparedCorpus
from textgen.data.prepare import PrepareConfig, prepare
from textgen.inference.generator import TextGenerator
from textgen.inference.sampling import GenerationConfig
from textgen.model import checkpoint
from textgen.train.finetune import plan
from textgen.train.trainer import Trainer

NEW_TEXT = "春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。\n龘靐齉爩，新字新詞。\n"


@pytest.fixture(scope="module")
def new_corpus(tmp_path_factory):
    """A corpus with characters the base corpus (the 1998 slice) never had."""
    out = tmp_path_factory.mktemp("ft") / "new"
    src = out.parent / "new.txt"
    src.write_text(NEW_TEXT * 60, encoding="utf-8")
    prepare(PrepareConfig(sources=[str(src)], out=str(out)), progress=False)
    return out


@pytest.fixture
def train_base(tmp_path, prepared, tiny_model, tiny_train):
    """``train_base(softmax="full")``: a tiny model trained 10 steps on the 1998 slice; its last.pt."""

    def base(softmax="full"):
        model_cfg = tiny_model(prepared, softmax=softmax)
        t = Trainer(prepared, tmp_path / "base", model_cfg, tiny_train(max_steps=10))
        t.run()
        return tmp_path / "base" / "last.pt"

    return base


@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_old_rows_are_kept_bit_for_bit_and_new_ones_appended(
    prepared, new_corpus, softmax, train_base
):
    base = train_base(softmax)
    old = checkpoint.load(base)["model"]
    corpus = PreparedCorpus.open(new_corpus)
    cfg, vocab, init = plan(base, corpus, {})
    n_old = old["embed.weight"].shape[0]
    assert vocab.tokens[:n_old] == PreparedCorpus.open(prepared).vocab.tokens
    assert {"龘", "覺", "處"} <= set(vocab.tokens[n_old:]) and cfg.vocab_size == len(vocab)
    new = init["model"]
    grown = [k for k in old if new[k].shape != old[k].shape]
    out_rows = "decoder.weight" if softmax == "full" else "adaptive.tail.0.1.weight"
    assert "embed.weight" in grown and out_rows in grown
    for k, t in old.items():
        assert torch.equal(new[k][: t.shape[0]], t.float())  # old ids: identical rows
    # new rows follow the documented rule: a Traditional char whose Simplified form the base
    # knows starts from that row; others from the mean of the old rows
    base_vocab = PreparedCorpus.open(prepared).vocab
    for ch, simp in (("處", "处"), ("覺", "觉")):
        if simp in base_vocab:
            assert torch.equal(
                new["embed.weight"][vocab.id(ch)], old["embed.weight"][base_vocab.id(simp)]
            )
    mean = old["embed.weight"].float().mean(0)
    assert torch.allclose(new["embed.weight"][vocab.id("龘")], mean)
    assert torch.allclose(new[out_rows][-1], old[out_rows].float().mean(0))


def test_fine_tuned_model_generates_from_a_new_character(
    tmp_path, new_corpus, train_base, tiny_train
):
    base = train_base()
    cfg, vocab, init = plan(base, PreparedCorpus.open(new_corpus), {})
    t = Trainer(new_corpus, tmp_path / "ft", cfg, tiny_train(max_steps=40), vocab=vocab, init=init)
    before = t.evaluate()["bpc"]
    assert t.run()["val_bpc"] < before - 0.5  # it learns the new text
    gen = TextGenerator.from_checkpoint(tmp_path / "ft")
    r = gen.generate("龘靐", GenerationConfig(max_new_tokens=12, seed=1))
    assert r.unknown_prompt_chars == 0 and len(r.samples[0].text) == 12
    # and it still reads what the base model read
    assert (
        gen.generate("中国人民", GenerationConfig(max_new_tokens=4, seed=1)).unknown_prompt_chars
        == 0
    )
    assert checkpoint.load(tmp_path / "ft" / "last.pt")["init_from"]["new_tokens"] >= 4


@pytest.mark.slow
def test_init_from_errors_are_one_clear_line(
    tmp_path, new_corpus, pfr_slice, train_base, tiny_model, tiny_train, textgen_cli
):
    base = train_base()
    common = ["train", "--data", str(new_corpus), "--out", str(tmp_path / "x"), "--max-steps", "2"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    r = textgen_cli(*common, "--init-from", str(junk))
    assert r.returncode == 1 and "junk.pt: not a readable checkpoint" in r.stderr
    assert "Traceback" not in r.stderr
    r = textgen_cli(*common, "--init-from", str(base), "--hidden-size", "64")
    assert r.returncode == 1 and "hidden_size=64 conflicts with --init-from" in r.stderr
    assert "whose hidden_size is 16" in r.stderr
    words = tmp_path / "words"
    prepare(PrepareConfig(sources=[str(pfr_slice)], out=str(words), level="word"), progress=False)
    wcfg = tiny_model(words)
    Trainer(words, tmp_path / "wbase", wcfg, tiny_train(max_steps=2)).run()
    r = textgen_cli(*common, "--init-from", str(tmp_path / "wbase"))
    assert r.returncode == 1 and "is a word-level model" in r.stderr and "--level word" in r.stderr


@pytest.mark.slow
def test_fine_tuning_run_resumes(tmp_path, new_corpus, train_base, textgen_cli):
    base = train_base()
    out = tmp_path / "ft"
    args = [
        "train",
        "--data",
        str(new_corpus),
        "--out",
        str(out),
        "--init-from",
        str(base),
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--threads",
        "1",
        "--no-progress",
        "--save-every",
        "5",
        "--eval-every",
        "5",
    ]
    assert textgen_cli(*args, "--max-steps", "10").returncode == 0
    first = checkpoint.load(out / "last.pt")
    r = textgen_cli(*args, "--max-steps", "15", "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout
    last = checkpoint.load(out / "last.pt")
    assert last["step"] == 15 and last["tokenizer"]["vocab"] == first["tokenizer"]["vocab"]
    assert last["init_from"] == first["init_from"]
