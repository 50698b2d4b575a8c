"""Property-based test (Hypothesis) of ``--set`` parsing: any override either gives a valid
experiment and memory or a BadConfig, never another exception; through the CLI it is always
exit code 2 with one line on stderr (the run is stopped before training by an unknown --device)."""

import contextlib
import io
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engramlab.cli import main
from engramlab.config import apply_overrides, parse_value
from engramlab.errors import BadConfig
from engramlab.memories import build_memory
from engramlab.training import Experiment

PRESET = "hopfield-learned-digits"


def dotted_keys(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from dotted_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


KEYS = sorted(dotted_keys(Experiment.from_preset(PRESET).to_dict())) + ["memory.name", "memory.beta"]
TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("é∞\x00"), max_size=12)
NUMBER = st.one_of(
    st.integers(-(10**4), 10**4),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
PLAIN = st.one_of(NUMBER, st.booleans(), st.none(), TEXT)
VALUE = st.one_of(
    TEXT,
    st.sampled_from(
        ["nan", "NaN", "Infinity", "-Infinity", "1e400", "none", "true", "[]", "{}", "[1,", "modern-hopfield"]
    ),
    PLAIN.map(json.dumps),
    st.lists(PLAIN, max_size=3).map(json.dumps),
    st.lists(st.lists(NUMBER, max_size=2), max_size=2).map(json.dumps),
)
KEY = st.one_of(st.sampled_from(KEYS), TEXT, st.sampled_from(KEYS).map(lambda k: k + ".x"))
OVERRIDES = st.lists(st.builds(lambda k, v: f"{k}={v}", KEY, VALUE) | TEXT, min_size=1, max_size=3)


def build(overrides):
    experiment = Experiment.from_preset(PRESET, overrides)
    build_memory(experiment.memory_name, (1, 8, 8), **experiment.memory_fields)
    return experiment


@settings(max_examples=80, deadline=None)
@given(overrides=OVERRIDES)
@example(["train.steps=" + "[" * 5000 + "]" * 5000])  # was a RecursionError from the JSON parser
@example(["memory.key_dim=0"])
@example(["data.value_range=[1, 0]"])
@example(["train.betas=[NaN, 0.9]"])
@example(["memory=3"])
def test_an_override_gives_a_valid_experiment_or_bad_config(overrides):
    try:
        experiment = build(overrides)
    except BadConfig:
        return
    assert Experiment.from_dict(experiment.to_dict()) == experiment  # what a checkpoint stores round-trips


@settings(max_examples=20, deadline=None)
@given(overrides=OVERRIDES)
def test_through_the_cli_a_bad_override_is_one_line_and_exit_2(overrides):
    argv = ["train", PRESET, *[a for o in overrides for a in ("--set", o)], "--device", "no-such-device"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    assert code == 2 and err.getvalue().count("\n") == 1 and err.getvalue().startswith("engram: error:")


@given(value=VALUE)
@settings(max_examples=60, deadline=None)
def test_parse_value_never_raises(value):
    parse_value(value)
    apply_overrides({"a": {"b": 1}}, [f"a.b={value}"])
