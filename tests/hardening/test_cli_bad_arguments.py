"""Fault matrix, CLI: bad arguments to every subcommand give exit code 2, exactly one line on stderr
starting with ``engram: error:``, and no traceback. Run in-process (``main(argv)``) so the table
stays fast; tests/cli/test_cli.py checks the same contract through a real subprocess."""

import numpy as np
import pytest

from engramlab.cli import EXAMPLES, build_parser, main

TRAIN = ["train", "hopfield-learned-digits"]
TINY = ["--set", "train.steps=1", "--set", "data.batch_size=2", "--set", "data.episode_length=4", "--device", "cpu"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a 1-step checkpoint (run/), an image, a non-image, a plain file and a folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    assert main([*TRAIN, *TINY, "--set", "train.eval_batches=1", "--out", str(root / "run"), "--no-progress"]) == 0
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(root / "img.png")
    (root / "notimg.png").write_text("not an image")
    (root / "afile").write_text("x")
    (root / "adir").mkdir()
    (root / "bad.toml").write_text("x = [")
    (root / "meta-broken").mkdir()
    (root / "meta-broken" / "meta.json").write_text("{not json")
    return root


CASES = [
    # (argv, a substring of the one error line); {w} is the work folder
    ([], "required"),
    (["nope"], "invalid choice"),
    (["--data-dir"], "expected one argument"),
    (["train"], "required: config"),
    (["train", "no-such-preset"], "unknown preset 'no-such-preset'"),
    (["train", "{w}/bad.toml"], "not valid TOML"),
    ([*TRAIN, "--set", "train.steps"], "must look like key=value"),
    ([*TRAIN, "--set", "train.nope=1"], "unknown config key 'train.nope'"),
    ([*TRAIN, "--set", "train.steps=abc"], "must be an integer"),
    ([*TRAIN, "--set", "train.steps=-5"], "train.steps"),
    ([*TRAIN, "--set", "train.steps=1e400"], "must be an integer"),
    ([*TRAIN, "--set", "train.lr=NaN"], "train.lr"),
    ([*TRAIN, "--set", "train.steps.x=3"], "is not a table"),
    ([*TRAIN, "--set", "memory.nope=3"], "memory.nope"),
    ([*TRAIN, "--set", "data.corruption=blur:k=3"], "unknown corruption kind 'blur'"),
    ([*TRAIN, "--device", "nonsense"], "unknown device 'nonsense'"),
    ([*TRAIN, *TINY, "--out", "{w}/afile"], "is a file"),
    ([*TRAIN, *TINY, "--out", "{w}/run"], "already holds checkpoints"),
    ([*TRAIN, *TINY, "--set", "data.episode_length=5000", "--out", "{w}/new"], "exceeds"),
    (["eval"], "required: checkpoint"),
    (["eval", "{w}/missing"], "checkpoint not found"),
    (["eval", "{w}/afile"], "got the file"),
    (["eval", "{w}/meta-broken"], "not valid JSON"),
    (["eval", "{w}/run", "--episodes", "0"], "positive integer"),
    (["eval", "{w}/run", "--episodes", "x"], "invalid int value"),
    (["eval", "{w}/run", "--split", "dev"], "invalid choice"),
    (["eval", "{w}/run", "--corrupt", "nope", "--device", "cpu"], "unknown corruption kind"),
    (["eval", "{w}/run", "--corrupt", "block:size=99", "--episodes", "2", "--device", "cpu"], "block size 99"),
    (["eval", "{w}/run", "--json", "{w}/adir", "--device", "cpu"], "is a folder"),
    (["read", "{w}/run"], "required: --images"),
    (["read", "{w}/run", "--images", "{w}/missing.png", "--device", "cpu"], "not found"),
    (["read", "{w}/run", "--images", "{w}/notimg.png", "--device", "cpu"], "notimg.png"),
    (["read", "{w}/run", "--images", "{w}/img.png", "--corrupt", "flip:p=2", "--device", "cpu"], "p must be in"),
    (["read", "{w}/run", "--images", "{w}/img.png", "--out", "{w}/adir", "--device", "cpu"], "adir"),
    (["generate", "{w}/run", "--device", "cpu"], "not generative"),
    (["generate", "{w}/run", "--n", "0"], "positive integer"),
    (["generate", "{w}/missing"], "checkpoint not found"),
    (["bench", "no-such-suite", "--quick"], "unknown benchmark suite"),
    (["bench", "--seed", "x"], "invalid int value"),
    (["bench", "hopfield-capacity", "--device", "nonsense"], "unknown device"),
    (["demo", "--seconds", "-1"], "positive number"),
    (["demo", "--seconds", "abc"], "invalid number"),
    (["demo", "--device", "nonsense"], "unknown device"),
    (["data"], "required: data_command"),
    (["data", "download"], "required: name"),
    (["data", "download", "imagenet"], "no download source for dataset 'imagenet'"),
    (["data", "purge"], "invalid choice"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
]


def ids(case):
    return " ".join(case[0])[:70] or "(none)"


@pytest.mark.parametrize("argv, message", CASES, ids=[ids(c) for c in CASES])
def test_bad_arguments_give_one_line_and_exit_code_2(workdir, capsys, argv, message):
    code = main([a.replace("{w}", str(workdir)) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.startswith("engram: error: "), err
    assert message in err, err
    assert "Traceback" not in err + out


def test_every_subcommand_has_a_bad_argument_case():
    covered = {argv[0] for argv, _ in CASES if argv and argv[0] in EXAMPLES}
    assert covered == set(EXAMPLES)


@pytest.mark.parametrize("command", [[]] + [[c] for c in sorted(EXAMPLES)] + [["data", "download"]])
def test_help_has_no_escaped_percent_signs(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "%%" not in text and "%(" not in text


def test_eval_help_says_95_percent(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "95% CI" in capsys.readouterr().out
