"""engramlab: meta-learned memory in PyTorch.

Memories write an episode of patterns by fast adaptation, then read them back from corrupted
queries or generate from them. See DESIGN.md in the repository for the layout.
"""

__version__ = "0.1.0"
