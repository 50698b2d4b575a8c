"""The command line: help, listing, and one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from engramlab.cli import EXAMPLES, main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engramlab.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_command_with_an_example():
    out = run("--help")
    assert out.returncode == 0
    for command in EXAMPLES:
        assert command in out.stdout
    assert "example" in out.stdout


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_each_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_usage_error_is_one_line_and_exit_code_2():
    out = run("train")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("engram: error:")
    assert "Traceback" not in out.stderr


def test_unknown_preset_is_one_line_and_exit_code_2():
    out = run("train", "no-such-preset")
    assert out.returncode == 2
    assert "unknown preset 'no-such-preset'" in out.stderr and out.stderr.count("\n") == 1


def test_unknown_suite_is_one_line_and_exit_code_2():
    out = run("bench", "no-such-suite", "--quick")
    assert out.returncode == 2 and "unknown benchmark suite" in out.stderr and "Traceback" not in out.stderr


def test_debug_shows_the_traceback():
    out = run("--debug", "bench", "no-such-suite")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_list_names_memories_rules_suites_and_presets():
    out = run("list")
    assert out.returncode == 0
    for heading in ("memories:", "write rules:", "benchmark suites:", "presets:"):
        assert heading in out.stdout


def test_list_verbose_prints_parameter_counts_and_memory_sizes():
    out = run("list", "--verbose")
    assert out.returncode == 0
    sections = out.stdout.split("benchmark suites:")[0]  # memories and write rules
    lines = {line.split()[0]: line for line in sections.splitlines() if line.startswith("  ")}
    assert "8,127 memory floats" in lines["ebmm-strings"]  # the paper's 8127 vs Hopfield's 8128
    assert "8,128 memory floats" in lines["hopfield-hebbian"]
    assert "128·T memory floats" in lines["modern-hopfield"]
    assert "parameters" in lines["kanerva++"]
    for rule in ("gradient", "maml", "mplp"):
        assert rule in lines
