"""The one error family of engramlab (DESIGN.md, Conventions).

Library code raises these; the CLI turns them into one line on stderr and exit code 2.
Each subclass also derives from the matching built-in, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class EngramError(Exception):
    """Base class of every error engramlab raises on purpose."""


class BadInput(EngramError, ValueError):
    """A tensor of the wrong shape, dtype or range, NaN/Inf, an empty episode."""


class BadConfig(EngramError, ValueError):
    """An unknown config key, preset, memory, suite or a value out of its domain."""


class DataError(EngramError, OSError):
    """A data file that is missing, truncated or fails its checksum."""


class CheckpointError(EngramError, OSError):
    """A checkpoint that is missing, corrupt or does not match the model."""


class NumericalError(EngramError, FloatingPointError):
    """A non-finite loss, energy or gradient, or a covariance that stopped being positive definite."""
