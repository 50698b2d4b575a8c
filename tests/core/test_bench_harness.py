import json

from engramlab.evaluation.bench import BenchResult, markdown_table, register_suite, run_suite


@register_suite("test-suite", "a suite used by the harness tests")
def _suite(ctx):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    fig.savefig(ctx.figure_path("curve"))
    plt.close(fig)
    rows = [{"model": "a", "error": 0.5, "error_ci": 0.1, "error_paper": None}]
    return BenchResult(rows=rows, config={"episodes": 4, "quick": ctx.quick}, notes=["a note"])


def test_run_suite_writes_json_markdown_and_figures(tmp_path):
    paths = run_suite("test-suite", quick=True, seed=3, out_root=tmp_path, progress=False)
    record = json.loads(paths["json"].read_text())
    assert record["seed"] == 3 and record["quick"] and record["rows"][0]["error"] == 0.5
    assert "torch" in record["environment"] and record["wall_time_s"] >= 0
    assert record["figures"] == ["quick-curve.png"]
    md = paths["markdown"].read_text()
    assert "0.5 ± 0.1" in md and "a note" in md and "quick-curve.png" in md


def test_markdown_table_shows_ci_and_placeholders():
    table = markdown_table([{"model": "m", "x": 1.0, "x_ci": 0.25, "x_paper": None}])
    assert "| model | x | x_paper |" in table and "1 ± 0.25" in table and "–" in table
