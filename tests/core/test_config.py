from dataclasses import dataclass, field

import pytest

from engramlab.config import apply_overrides, from_dict, load_preset, parse_value, to_dict
from engramlab.errors import BadConfig


@dataclass(frozen=True)
class Inner:
    steps: int = 5
    rate: float = 0.1


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, ...] = (1, 2)
    mode: str | None = None


def test_from_dict_builds_nested_dataclasses_and_coerces_types():
    cfg = from_dict(Outer, {"inner": {"steps": 3, "rate": 1}, "sizes": [4, 5]})
    assert cfg.inner == Inner(steps=3, rate=1.0)
    assert isinstance(cfg.inner.rate, float)
    assert cfg.sizes == (4, 5)


def test_unknown_key_is_named_with_its_dotted_path():
    with pytest.raises(BadConfig, match="inner.stepz"):
        from_dict(Outer, {"inner": {"stepz": 3}})


def test_wrong_type_is_named():
    with pytest.raises(BadConfig, match="inner.steps"):
        from_dict(Outer, {"inner": {"steps": "many"}})


def test_round_trip_through_plain_data():
    cfg = Outer(name="y", inner=Inner(7, 0.5), sizes=(3,), mode="a")
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_overrides_set_nested_values_and_parse_literals():
    data = apply_overrides({"train": {"steps": 1}}, ["train.steps=100", "memory.beta=4.5", "train.flag=true"])
    assert data == {"train": {"steps": 100, "flag": True}, "memory": {"beta": 4.5}}
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("block:size=4") == "block:size=4"


def test_override_without_equals_is_a_clear_error():
    with pytest.raises(BadConfig, match="key=value"):
        apply_overrides({}, ["train.steps"])


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(BadConfig, match="unknown preset 'no-such-preset'"):
        load_preset("no-such-preset")


def test_preset_from_a_toml_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("seed = 3\n[train]\nsteps = 2\n")
    assert load_preset(str(path)) == {"seed": 3, "train": {"steps": 2}}
