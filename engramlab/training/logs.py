"""What a run leaves to read: ``log.csv`` always, TensorBoard scalars when it is installed."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class CsvLog:
    """``log.csv``: one row per logged update; the header grows (file rewritten) when new keys appear.

    On resume, rows after the resumed step (written by the killed run after its last checkpoint)
    are dropped, so the log continues without duplicates.
    """

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.fields: list[str] = []
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            self.fields, rows = self._read()
            rows = [r for r in rows if r.get("step") and int(r["step"]) <= resume_step]
        self._rewrite(rows)

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
            if self.fields:
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row: dict[str, Any]) -> None:
        text = {k: (f"{v:.9g}" if isinstance(v, float) else str(v)) for k, v in row.items()}
        new = [k for k in row if k not in self.fields]
        if new:
            rows = self._read()[1] if self.fields else []
            self.fields.extend(new)
            self._rewrite([*rows, text])
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(text)


def open_tensorboard(log_dir: Path, purge_step: int | None = None):
    """A TensorBoard ``SummaryWriter`` on ``log_dir``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.debug("tensorboard is not installed: logging to log.csv only")
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
