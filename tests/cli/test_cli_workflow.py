"""The command line end to end on tiny budgets: train -> eval -> read -> generate, the demo, and the
errors a user meets on the way (one line on stderr, exit code 2, no traceback)."""

import json

import numpy as np
import pytest
from PIL import Image

from engramlab.cli import main

TINY_HOPFIELD = ["--set", "train.steps=4", "--set", "train.eval_every=2", "--set", "train.eval_batches=1"]
TINY_VBM = [
    "--set", "data.dataset=digits", "--set", "data.image_size=16", "--set", "data.episode_length=8",
    "--set", "data.batch_size=2", "--set", "memory.code=8", "--set", "memory.rows=4", "--set", "memory.width=8",
    "--set", "memory.iters=3", "--set", "train.steps=2", "--set", "train.eval_batches=1",
]  # fmt: skip


def one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("engram: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def hopfield_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "hl"
    assert main(["train", "hopfield-learned-digits", *TINY_HOPFIELD, "--out", str(out), "--no-progress"]) == 0
    return out


def test_train_writes_a_loadable_run(hopfield_run, capsys):
    assert (hopfield_run / "log.csv").exists()
    assert any(p.name.startswith("step-") for p in hopfield_run.iterdir())
    assert main(["train", "hopfield-learned-digits", *TINY_HOPFIELD, "--out", str(hopfield_run), "--resume",
                 "--no-progress"]) == 0  # fmt: skip
    assert "trained to step 4" in capsys.readouterr().out  # already finished: resume is a no-op


def test_eval_prints_metrics_with_ci_and_writes_json(hopfield_run, tmp_path, capsys):
    path = tmp_path / "m.json"
    assert main(["eval", str(hopfield_run), "--episodes", "8", "--json", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "squared_error" in out and "±" in out
    metrics = json.loads(path.read_text())
    assert 0.0 <= metrics["retrieval_accuracy"] <= 1.0 and metrics["squared_error"] >= 0.0


def test_eval_with_another_corruption_changes_the_error(hopfield_run, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", str(hopfield_run), "--episodes", "8", "--json", str(a)]) == 0
    assert main(["eval", str(hopfield_run), "--episodes", "8", "--json", str(b), "--corrupt", "none"]) == 0
    assert json.loads(a.read_text())["squared_error"] != json.loads(b.read_text())["squared_error"]


def test_read_user_images_writes_a_grid(hopfield_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    out = tmp_path / "read.png"
    assert main(["read", str(hopfield_run), "--images", *paths, "--corrupt", "block:size=3", "--out", str(out)]) == 0
    assert out.exists() and out.stat().st_size > 0
    assert str(out) in capsys.readouterr().out


def test_read_missing_image_is_one_line(hopfield_run, tmp_path, capsys):
    assert main(["read", str(hopfield_run), "--images", str(tmp_path / "nope.png")]) == 2
    one_line_error(capsys, "image file not found", "nope.png")


def test_generate_from_a_non_generative_memory_is_one_line(hopfield_run, capsys):
    assert main(["generate", str(hopfield_run)]) == 2
    one_line_error(capsys, "not generative")


def test_generate_from_a_vbm_memory(tmp_path, capsys):
    run = tmp_path / "vbm"
    assert main(["train", "vbm-gauss-cifar10", *TINY_VBM, "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "samples.png"
    assert main(["generate", str(run), "--n", "8", "--episodes", "2", "--out", str(out)]) == 0
    assert out.exists() and out.stat().st_size > 0


def test_bad_config_key_is_one_line(tmp_path, capsys):
    code = main(["train", "hopfield-learned-digits", "--set", "memory.no_such_key=1", "--out", str(tmp_path / "x")])
    assert code == 2
    one_line_error(capsys, "no_such_key")


def test_bad_config_value_is_one_line(tmp_path, capsys):
    code = main(["train", "hopfield-learned-digits", "--set", "data.episode_length=-3", "--out", str(tmp_path / "x")])
    assert code == 2
    one_line_error(capsys, "episode_length")


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "no-run")]) == 2
    one_line_error(capsys)


def test_corrupt_checkpoint_is_one_line(hopfield_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(hopfield_run, run)
    for weights in run.rglob("*.safetensors"):
        data = bytearray(weights.read_bytes())
        data[-8:] = b"\x00" * 8
        weights.write_bytes(bytes(data))
    assert main(["eval", str(run), "--episodes", "4"]) == 2
    one_line_error(capsys)


def test_data_check_on_an_empty_directory_reports_missing(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "data", "check"]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and str(tmp_path) in out


def test_demo_writes_grid_table_and_json(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--seconds", "3", "--no-progress", "--device", "cpu"]) == 0
    for name in ("grid.png", "training.png", "demo.md", "demo.json"):
        assert (tmp_path / name).exists(), name
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    names = [r["memory"] for r in rows]
    assert names[0] == "modern-hopfield-learned" and "hopfield-pinv" in names
    assert all(r["squared_error"] >= 0 for r in rows)
    assert "modern-hopfield-learned" in capsys.readouterr().out
