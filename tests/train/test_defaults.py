"""The defaults rule (textgen/train/defaults.py): what it chooses, and that user values win."""

from pathlib import Path

import tomllib

from textgen.train import defaults

RECIPE = Path(__file__).resolve().parents[2] / "checkpoints" / "default" / "train.toml"


def test_rule_follows_budget_corpus_and_vocabulary():
    short = defaults.choose(train_chars=1_700_000, vocab_size=4689, minutes=5)
    assert short.model == {
        "cell": "lstm",
        "num_layers": 1,
        "embed_dim": 256,
        "hidden_size": 640,
        "softmax": "adaptive",
        "dropout": 0.0,  # ~1.8 estimated passes over the text: too few to overfit
    }
    assert short.train["lr"] == 6e-3 and short.train["warmup_steps"] == 50
    # short time budgets take BPTT chunks of 64 (more updates); long ones and step budgets 128
    assert short.train["seq_len"] == 64 and short.train["batch_size"] == 32
    assert defaults.choose(1_700_000, 4689, 29.9).train["seq_len"] == 64
    assert defaults.choose(1_700_000, 4689, 15).model["dropout"] == 0.1  # ~5.3 passes
    step_only = defaults.choose(1_700_000, 4689, 0)
    assert step_only.train["seq_len"] == 128 and step_only.model["hidden_size"] == 512
    assert step_only.model["dropout"] == 0.1
    long = defaults.choose(train_chars=1_700_000, vocab_size=4689, minutes=70)
    assert long.model["hidden_size"] == 768 and long.model["dropout"] == 0.25
    assert long.train["lr"] == 4e-3 and long.train["seq_len"] == 128
    # weight decay 0.1 at every budget, a step limit included
    for c in (short, step_only, long):
        assert c.train["weight_decay"] == 0.1
    assert any("weight decay 0.1" in r for r in short.reasons)
    # ~18 estimated passes in 70 minutes: the bundled model's levers; 30 minutes (~7.7
    # passes) is a long budget without them, and a short budget never has them
    assert long.model["dropout_mask"] == "locked" and long.model["weight_drop"] == 0.4
    assert long.train["ema"] == 0.999 and any("weight drop 0.4" in r for r in long.reasons)
    thirty = defaults.choose(1_700_000, 4689, 30)
    assert thirty.model["hidden_size"] == 768
    for c in (thirty, short, step_only):
        assert "weight_drop" not in c.model and "dropout_mask" not in c.model
        assert "ema" not in c.train
    # a big corpus in a long budget stays under the passes that need them
    assert "weight_drop" not in defaults.choose(20_000_000, 9000, 120).model
    # a small corpus seen many times over in the budget gets more dropout
    small = defaults.choose(train_chars=100_000, vocab_size=1500, minutes=5)
    assert small.model["dropout"] == 0.25 and small.model["softmax"] == "full"
    assert any("passes" in r for r in small.reasons) and len(small.reasons) >= 4


def test_user_values_win_and_are_reported():
    choice = defaults.choose(1_000_000, 5000, 15)
    model, train = {"hidden_size": 128}, {"lr": 1e-3}
    overridden = defaults.apply(choice, model, train)
    assert model["hidden_size"] == 128 and train["lr"] == 1e-3
    assert model["cell"] == "lstm" and train["warmup_steps"] == 50
    assert sorted(overridden) == ["hidden_size", "lr"]
    # the bundled recipe's TOML sets weight decay itself; a config's 0.01 stays 0.01
    train = {"weight_decay": 0.01}
    assert defaults.apply(choice, {}, train) == ["weight_decay"] and train["weight_decay"] == 0.01


def test_evaluation_cadence_follows_characters_and_validation_size():
    # a small validation split: every 819,200 training characters, whatever the BPTT length
    short = defaults.choose(1_700_000, 4689, 5, val_chars=50_000)
    assert short.train["eval_every"] == 400 and short.train["save_every"] == 400
    long = defaults.choose(1_700_000, 4689, 70, val_chars=50_000)
    assert long.train["eval_every"] == 200 and long.train["save_every"] == 200
    # a large one: every 10x its characters, so scoring it stays a small share of the time;
    # saving keeps the character cadence
    big_val = defaults.choose(2_950_000, 9061, 5, val_chars=305_636)
    assert big_val.train["eval_every"] == round(3_056_360 / (32 * 64))
    assert big_val.train["save_every"] == 400
    assert any("validation every 1492 steps" in r for r in big_val.reasons)
    # an explicit flag still wins
    train = {"eval_every": 50}
    assert defaults.apply(big_val, {}, train) == ["eval_every"] and train["eval_every"] == 50


def test_the_rules_levers_and_weight_decay_are_the_bundled_recipes():
    # the rule's long-budget levers claim to be the bundled model's: they move together
    recipe = tomllib.loads(RECIPE.read_text())
    for key, value in defaults.LEVERS_MODEL.items():
        assert recipe["model"][key] == value, key
    for key, value in {**defaults.LEVERS_TRAIN, "weight_decay": defaults.WEIGHT_DECAY}.items():
        assert recipe["train"][key] == value, key
