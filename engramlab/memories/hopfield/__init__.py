"""Hopfield baselines (issue 3, item 7): classical binary networks and modern continuous stores.

- ``classical``: "hopfield-hebbian", "hopfield-storkey", "hopfield-pinv" — binary networks with
  symmetric zero-diagonal weights, synchronous or asynchronous sign updates (the EBMM paper's
  baseline, papers/000).
- ``modern``: "modern-hopfield" (Ramsauer et al. 2020, projection-free store with a plain
  ``retrieve`` function) and "modern-hopfield-learned" (meta-learned query/key projections and β).
"""

from engramlab.memories.hopfield.classical import (
    ClassicalHopfield,
    ClassicalHopfieldConfig,
    HebbianHopfield,
    HopfieldWeights,
    PseudoInverseHopfield,
    StorkeyHopfield,
    async_update,
    hebbian_weights,
    hopfield_energy,
    pseudo_inverse_weights,
    storkey_weights,
    sync_update,
)
from engramlab.memories.hopfield.modern import (
    LearnedHopfieldConfig,
    LearnedModernHopfield,
    ModernHopfield,
    ModernHopfieldConfig,
    StoredPatterns,
    default_beta,
    retrieve,
)

__all__ = [
    "ClassicalHopfield",
    "ClassicalHopfieldConfig",
    "HebbianHopfield",
    "HopfieldWeights",
    "LearnedHopfieldConfig",
    "LearnedModernHopfield",
    "ModernHopfield",
    "ModernHopfieldConfig",
    "PseudoInverseHopfield",
    "StorkeyHopfield",
    "StoredPatterns",
    "async_update",
    "default_beta",
    "hebbian_weights",
    "hopfield_energy",
    "pseudo_inverse_weights",
    "retrieve",
    "storkey_weights",
    "sync_update",
]
