"""The kpp-*/dkm-* presets parse, name their dataset and build their memory."""

import pytest

from engramlab.config import preset_names
from engramlab.memories.base import build_memory
from engramlab.training.config import Experiment

NAMES = sorted(n for n in preset_names() if n.startswith(("kpp-", "dkm-")))


def test_kanerva_presets_exist():
    assert {"kpp-bmnist", "kpp-bomniglot", "kpp-bomniglot-dense", "kpp-fashion", "dkm-bmnist", "dkm-bomniglot"} <= set(
        NAMES
    )


@pytest.mark.parametrize("name", NAMES)
def test_preset_builds_its_memory(name):
    exp = Experiment.from_preset(name)
    memory = build_memory(exp.memory_name, (1, 28, 28), **exp.memory_fields)
    assert memory.generative
    likelihood = exp.memory_fields["likelihood"]
    assert (likelihood == "bernoulli") == (exp.data.binarize is not None)
