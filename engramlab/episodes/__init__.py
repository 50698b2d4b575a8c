"""Episodes: data in (standard-format readers, sampler, corruptions), nothing model-specific."""
