"""Building blocks shared by several memories (likelihoods, matrix-normal, ResBlocks, crops)."""
