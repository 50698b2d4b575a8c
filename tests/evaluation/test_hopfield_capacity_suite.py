"""The hopfield-capacity benchmark on a tiny budget: rows, figure, the capacity effect."""

import json

from engramlab.evaluation import bench
from engramlab.evaluation.suites import hopfield_capacity


def test_capacity_suite_writes_rows_figure_and_shows_hebbian_breakdown(tmp_path, monkeypatch):
    monkeypatch.setattr(hopfield_capacity, "QUICK", {"T": [4, 40], "episodes": 3, "queries": 4})
    paths = bench.run_suite("hopfield-capacity", quick=True, out_root=tmp_path, progress=False)
    record = json.loads(paths["json"].read_text())
    rows = {(r["model"], r["T"]): r for r in record["rows"]}
    assert len(rows) == 2 * len(hopfield_capacity.MODELS)
    assert rows[("hebbian (async)", 4)]["bit_error"] == 0.0
    assert rows[("hebbian (async)", 40)]["bit_error"] > 0.05  # load 0.31 > 0.138
    assert rows[("modern (1 step)", 40)]["bit_error"] == 0.0
    assert rows[("modern (1 step)", 40)]["memory_floats"] == 40 * 128
    assert rows[("storkey (async)", 4)]["memory_floats"] == 128 * 127 // 2
    assert record["config"]["episodes_per_T"] == 3
    assert record["figures"] == ["quick-bit-error-vs-load.png"]


def test_capacity_suite_uses_the_same_episodes_for_every_model():
    a = hopfield_capacity._episodes(0, 16, 2, 4)
    b = hopfield_capacity._episodes(0, 16, 2, 4)
    assert all((x == y).all() for x, y in zip(a, b))
    assert (a[1] != a[2]).float().mean() > 0.05  # queries are corrupted targets
