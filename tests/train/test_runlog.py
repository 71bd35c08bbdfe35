"""textgen.train.runlog: metrics.jsonl, cut back to a step on resume."""

import json

from textgen.train.runlog import read_metrics, truncate_metrics


def test_truncate_metrics_drops_later_rows_and_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 8))
        + '{"step": 8, "lo'
    )
    truncate_metrics(path, 5)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]
