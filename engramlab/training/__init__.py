"""The one meta-training loop: optimiser, clipping, schedule, checkpoints, resume, DDP."""
