"""What `textgen train` does when no model or training flag says otherwise: one rule, here.

The rule turns four facts into settings: the sizes of the training and validation splits in
characters, the vocabulary size, and the time budget. Every branch comes from runs on the
2-core CPU these tools are built on, or at equal steps on a lent GPU (the same settings:
equal steps are equal time, as none of these choices changes the cost of a step);
`benchmarks/defaults.py` re-measures the result against
the 7-gram and against hand-tuned runs, and the README's "Train on your own text" table gives
the figures with their commands. What was measured:

* cell: LSTM. Equal 10-minute runs on the 1998 corpus: LSTM 5.61, GRU 5.72, plain RNN 6.12
  validation BPC (`benchmarks/train_quality.py`).
* one layer: 1x512 makes ~1.5x the steps of 2x512 in the same time and learns as much per
  step (10 minutes: 5.69 vs 5.92). Its width under LONG_BUDGET_MIN: 640 units (SHORT_HIDDEN),
  from the 5-minute runs at seq 64 in the BPTT item below; with only a step limit, 512
  (STEP_HIDDEN), the width measured at seq 128 before it. Earlier, at seq 128: 384 units
  (lr 8e-3) 5.7663 against 512's 5.7229 in 5 minutes (AMD, 2026-12-02); the 768-unit long
  recipe 5.7356 against 512's 5.6209 in 15 minutes (Intel Xeon, fp32).
* softmax: adaptive once the vocabulary has two tail clusters (> 2,000 ids): ~2x the
  throughput of a full softmax at ~5k ids, same quality per step.
* learning rate 6e-3 with 50 warm-up steps: best of a 300-step sweep; decays (cosine) over the
  budget to 0.1 of its peak.
* BPTT chunks of 64 characters under LONG_BUDGET_MIN minutes (128 otherwise): the same
  chars/s in twice the updates. 5 minutes on the 1998 corpus (AMD EPYC, bf16, 2026-12-04,
  each run alone; seeds 1234 (the default) and 2): seq 128 5.7856 / 5.7801 validation BPC
  (1,321 / 1,441 steps), seq 64 5.7159 / 5.7130 (2,689 / 2,801). Neighbours were worse: seq
  32 5.7663 (4,401 steps), seq 64 with batch 16 5.7762 (4,201), with lr 8e-3 5.7256, with 384
  units 5.7320 (3,895 steps); with 640 units **5.6955** (2,023), the 7-gram's 5.6973 beaten:
  the short-budget width (above), all with dropout 0.1; with --seed 2 it made 5.7863
  (1,933 steps), with --seed 3 5.7053 (2,121): the spread that no dropout removes (the
  dropout item). 15 minutes, same day: 512 units at seq 128 5.5706 (4,510 steps), 640 at
  seq 64 5.5317 (6,049; `benchmarks/defaults.py`). On the Tang poems (2.95M characters,
  9,061 ids), 5 minutes: 512 at seq 128 7.1291 (1,257 steps); 640 at seq 64 7.1818 (1,601)
  evaluating every 200 steps, 7.0990 (2,008) every 1,492 (the evaluation item), and with
  no dropout too (the rule then, weight decay 0.01) 7.0829 (1,860).
* long budgets (>= LONG_BUDGET_MIN minutes): 1x768, dropout 0.25, lr 4e-3, 100 warm-up steps,
  decay to 0.05: the previous bundled model's 70-minute recipe (dropout 0.4 was worse at 768
  and 1024 units; see checkpoints/default/README.md). Past LEVER_PASSES estimated passes they
  also take the current bundled model's levers: locked dropout, DropConnect 0.4 on the
  recurrent weights and weight averaging (``--dropout-mask locked --weight-drop 0.4 --ema
  0.999``). On a lent H200 at equal steps (2026-12-04; the rule's long settings with weight
  decay 0.1 on the 1998 corpus, best validation BPC without / with the levers): 4,000 steps
  (~9.8 passes) 5.3339 / 5.3928, 6,000 (~14.7) 5.2687 / 5.2778, 8,000 (~19.6) 5.2419 /
  5.2079 and with --seed 2 5.2385 / 5.2181; at the 120-minute run's 19,826 (~48) they
  saved ~0.10 (the model card's screen). The estimate (EST_CHARS_PER_S, fp32) runs ~1.5x
  under the true passes of a bf16 run on this machine (the 120-minute run: 30.9 estimated,
  48 made), so LEVER_PASSES 12 estimated lands between 6,000 and 8,000 steps: ~46 minutes
  on the 1998 corpus. At 12 minutes the levers cost 0.116 (`benchmarks/regularisers.py`).
* weight decay (AdamW) 0.1, not 0.01, at every budget: it took 0.128 off the bundled model's
  test BPC at full length, and it wins at the rule's own budgets too. Equal steps on a lent
  H200 (2026-12-04, the rule's settings, best validation BPC, weight decay 0.01 / 0.05 / 0.1 /
  0.2): 1998 corpus at 2,000 steps (a 5-minute run's) 5.6873 / 5.6227 / 5.5938 / 5.5883
  (--seed 2: 0.01 5.7192, 0.1 5.6417), at 6,000 (15 minutes') 5.5384 / 5.4205 / 5.3710 /
  5.3760 (0.15: 5.3555); the poems at 2,000 7.0598 / 7.0053 / 6.9527 / 6.9223 (--seed 2:
  7.0505 / 6.9495 for 0.01 / 0.1), at 6,000 6.8345 / 6.6836 / 6.6157 / 6.6324 (0.15:
  6.5963); the long settings at 4,000 steps 5.4387 / 0.1: 5.3339, at 8,000 5.3371 / 5.2419.
  0.1 to 0.2 are within the seed spread; 0.1 is the bundled model's. On the CPU, alone
  (AMD EPYC, bf16): 1998 corpus 5 minutes 5.6942 (1,810 steps) / 0.1: 5.5935 (2,031); poems
  5 minutes 7.0527 (2,069) / 0.1: 7.0235 (1,747). With weight decay 0.1 dropout still pays
  at 6,000 steps on the 1998 corpus (dropout 0: 5.5325, 0.1: 5.3710; poems 6.6142 / 6.6157).
  Fine-tuning keeps 0.01 (decay pulls the base model's weights towards zero).
* dropout: none when the budget buys at most FEW_PASSES (estimated) passes over the training
  text, 0.1 up to OVERFIT_PASSES, 0.25 beyond (the previous bundled model saw 19.5 passes;
  its training loss ended 0.6 bits under its validation loss with 0.2). 5 minutes on the
  1998 corpus (~1.8 estimated passes; AMD EPYC, bf16, 2026-12-04, each run alone, 1x640 at
  seq 64, evaluation every 454 steps): dropout 0 with seeds 1234 / 2 / 3 made 5.6853 /
  5.6905 / 5.6761 (1,948 / 2,145 / 2,205 steps), all under the 7-gram's 5.6973; dropout 0.1
  made 5.6955 / 5.7820 / 5.7053 (seed 2 evaluated here every 454 steps, the others every
  200): 0.044 worse on average and 6x the spread. (At 512 units and seq 128, 2026-12-02:
  dropout 0 5.7189 against 0.1's 5.7229.) Between 2.5 and 12 passes dropout 0 is not
  measured.
* evaluation every EVAL_VAL_MULTIPLE x the validation split's characters, at least every
  EVAL_CHARS training characters (200 steps of 32 x 128, the old fixed cadence); last.pt
  every EVAL_CHARS. At a fixed 200 steps, chunks of 64 evaluated twice as often, and the
  poems' 305k-character validation split took ~29% of a 5-minute run. `benchmarks/defaults.py`
  with this cadence (2026-12-04 morning, weight decay 0.01): 1998 corpus 5.6962 / 5.5328 at
  5 / 15 minutes (5.6735 in a rerun of the 5 minutes alone), poems 7.0829 / 6.8353; with
  dropout 0.1 and evaluation every 200 steps the same morning: 5.6934 / 5.5317 and 7.1818 /
  6.8826. With weight decay 0.1 (the afternoon, the whole rule as it is): 5.5971 / 5.3597
  and 6.9234 / 6.6242 (hand-tuned at 15 minutes, with 0.1 too: 5.3975 and 6.7212).
* fine-tuning (``--init-from``): the base model's architecture; lr 5e-4 with 20 warm-up
  steps. Fine-tuning the bundled model on 98k characters of 2013 news for 5 minutes
  (`benchmarks/finetune.py`): lr 5e-4 5.904 validation BPC, 2e-3 6.141, 6e-3 6.792; the
  untouched model 6.041 (higher rates overwrite what the base model knows).

Explicit flags and ``--config`` values always win over the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_MINUTES = 15.0  # the budget when neither --max-minutes nor --max-steps is given
LONG_BUDGET_MIN = 30.0
OVERFIT_PASSES = 12.0  # more estimated passes over the training text: dropout 0.25
FEW_PASSES = 2.5  # this many or fewer: no dropout (between the two: 0.1)
LEVER_PASSES = 12.0  # a long budget past this many estimated passes: the bundled model's levers
WEIGHT_DECAY = 0.1
LEVERS_MODEL = {"dropout_mask": "locked", "weight_drop": 0.4}
LEVERS_TRAIN = {"ema": 0.999}
ADAPTIVE_MIN_VOCAB = 2001
SHORT_SEQ_LEN = 64  # BPTT length under a budget shorter than LONG_BUDGET_MIN
SHORT_HIDDEN = 640  # units under a budget shorter than LONG_BUDGET_MIN
STEP_HIDDEN = 512  # units when only a step limit is given (no time budget to plan for)
# Evaluate every EVAL_VAL_MULTIPLE times the validation split's characters, and at least every
# EVAL_CHARS (200 steps of 32 x 128); save last.pt every EVAL_CHARS. Scoring runs at roughly
# twice the training chars/s, so evaluation then costs about 5% of the time.
EVAL_CHARS = 819_200
EVAL_VAL_MULTIPLE = 10
# Training characters per second of the chosen shapes on the 2-core CPU (fp32: it has no
# AMX), batch 32 x 128, used only to estimate passes over the data: medians of steps 10-60
# of `textgen train --data data/prepared/pd1998 --max-steps 60` (13.3k for 1x512, 7.3k for
# 1x768 with --hidden-size 768). 640 units: the 512 figure times the ratio of the medians
# of the 5-minute bf16 runs at seq 64 (15.9k chars/s for 640 against 21.2k for 512).
EST_CHARS_PER_S = {STEP_HIDDEN: 13_300.0, SHORT_HIDDEN: 10_000.0, 768: 7_300.0}


@dataclass
class Choice:
    """Settings the rule picked, and why (printed by `textgen train`, kept in config.json)."""

    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "train": self.train, "reasons": self.reasons}


def budget_minutes(train: dict[str, Any]) -> float:
    """The time budget the rule plans for (0 when only a step limit was given)."""
    return float(train.get("max_minutes") or 0.0)


def choose(train_chars: int, vocab_size: int, minutes: float, val_chars: int = 0) -> Choice:
    """Model and training settings for a corpus and a budget (0: a step budget only).

    ``val_chars``, the validation split's size, sets how often the run evaluates.
    """
    c = Choice()
    long = minutes >= LONG_BUDGET_MIN
    hidden = 768 if long else SHORT_HIDDEN if minutes else STEP_HIDDEN
    c.model = {"cell": "lstm", "num_layers": 1, "embed_dim": 256, "hidden_size": hidden}
    c.reasons.append(
        f"1x{hidden} LSTM: {'a long' if long else 'a short'} budget ({minutes:g} min; "
        f"{LONG_BUDGET_MIN:g}+ gets the 70-minute recipe's 768 units)"
        if minutes
        else f"1x{hidden} LSTM: no time budget given (step limit only)"
    )
    adaptive = vocab_size >= ADAPTIVE_MIN_VOCAB
    c.model["softmax"] = "adaptive" if adaptive else "full"
    c.reasons.append(
        f"{c.model['softmax']} softmax: vocabulary of {vocab_size:,} ids "
        f"({'>=' if adaptive else '<'} {ADAPTIVE_MIN_VOCAB:,})"
    )
    passes = EST_CHARS_PER_S[hidden] * minutes * 60 / max(train_chars, 1)
    if long or passes > OVERFIT_PASSES:
        dropout, why = 0.25, f"> {OVERFIT_PASSES:g} passes{' or a long budget' if long else ''}"
    elif minutes and passes <= FEW_PASSES:
        dropout, why = 0.0, f"<= {FEW_PASSES:g} passes: too few to overfit"
    else:
        dropout, why = 0.1, f"{FEW_PASSES:g} to {OVERFIT_PASSES:g} passes"
    c.model["dropout"] = dropout
    c.reasons.append(
        f"dropout {dropout:g}: ~{passes:.1f} passes over {train_chars:,} training "
        f"characters in {minutes:g} min ({why})"
        if minutes
        else f"dropout {dropout:g}: no time budget to estimate passes over the data from"
    )
    short_bptt = 0 < minutes < LONG_BUDGET_MIN
    c.train = {
        "batch_size": 32,
        "seq_len": SHORT_SEQ_LEN if short_bptt else 128,
        "lr": 4e-3 if long else 6e-3,
        "weight_decay": WEIGHT_DECAY,
        "warmup_steps": 100 if long else 50,
        "min_lr_ratio": 0.05 if long else 0.1,
    }
    if long and passes > LEVER_PASSES:
        c.model.update(LEVERS_MODEL)
        c.train.update(LEVERS_TRAIN)
        c.reasons.append(
            f"locked dropout, weight drop {LEVERS_MODEL['weight_drop']:g}, weight averaging "
            f"(ema {LEVERS_TRAIN['ema']:g}): > {LEVER_PASSES:g} passes in a long budget, "
            "where the bundled model's levers start to pay"
        )
    if short_bptt:
        why = (
            f"a budget under {LONG_BUDGET_MIN:g} min buys more updates from BPTT chunks of "
            f"{SHORT_SEQ_LEN} (twice the steps of 128 at the same chars/s)"
        )
    elif minutes:
        why = f"BPTT chunks of 128 ({LONG_BUDGET_MIN:g}+ min)"
    else:
        why = "BPTT chunks of 128 (a step limit, not a time budget)"
    c.reasons.append(f"batch {c.train['batch_size']} x {c.train['seq_len']} characters: {why}")
    c.reasons.append(
        f"lr {c.train['lr']:g}, {c.train['warmup_steps']} warm-up steps, cosine decay to "
        f"{c.train['min_lr_ratio']:g} of it over the budget; AdamW weight decay "
        f"{WEIGHT_DECAY:g} (0.01 was worse at every budget measured)"
    )
    step_chars = c.train["batch_size"] * c.train["seq_len"]
    eval_chars = max(EVAL_CHARS, EVAL_VAL_MULTIPLE * val_chars)
    c.train["eval_every"] = max(1, round(eval_chars / step_chars))
    c.train["save_every"] = max(1, round(EVAL_CHARS / step_chars))
    c.reasons.append(
        f"validation every {c.train['eval_every']} steps (~{eval_chars:,} training characters: "
        f"the larger of {EVAL_CHARS:,} and {EVAL_VAL_MULTIPLE}x the {val_chars:,}-character "
        f"validation split, so scoring it takes ~5% of the time); last.pt every "
        f"{c.train['save_every']} steps ({EVAL_CHARS:,} characters)"
    )
    return c


def choose_finetune() -> Choice:
    """Training settings for ``--init-from`` (the model comes from the base checkpoint)."""
    c = Choice(train={"batch_size": 32, "seq_len": 128, "lr": 5e-4, "warmup_steps": 20})
    c.reasons.append(
        "fine-tuning: the base model's architecture; lr 5e-4 with 20 warm-up steps "
        "(2e-3 and 6e-3 were worse: benchmarks/finetune.py)"
    )
    return c


def apply(choice: Choice, model: dict[str, Any], train: dict[str, Any]) -> list[str]:
    """Fill ``model`` and ``train`` with the rule's values where the user set nothing.

    Returns the names the user's values overrode, for the log.
    """
    overridden = []
    for mine, theirs in ((choice.model, model), (choice.train, train)):
        for key, value in mine.items():
            if key in theirs and theirs[key] != value:
                overridden.append(key)
            theirs.setdefault(key, value)
    return overridden
