"""textgen.evaluation.evaluate: a text file scored in the other Chinese script than the model's."""

import pytest

from textgen.data.script import detect_text_script, to_script


def test_eval_text_in_the_other_script_scores_like_the_models_own(tmp_path):
    from textgen.evaluation.evaluate import evaluate_checkpoint

    lines = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n中国人民解放军发展经济。\n" * 20
    simp, trad = tmp_path / "s.txt", tmp_path / "t.txt"
    simp.write_text(lines, encoding="utf-8")
    trad.write_text(to_script(lines, "traditional"), encoding="utf-8")
    assert detect_text_script(trad.read_text(encoding="utf-8")) == "traditional"
    a = evaluate_checkpoint("default", text_file=simp)
    b = evaluate_checkpoint("default", text_file=trad)
    assert b["unknown_rate"] == 0 and b["bpc"] == pytest.approx(a["bpc"], abs=1e-9)
