"""Markdown table of kdiag.py logs (JSON lines, one row per evaluation): python table.py run1.log run2.log ..."""

import json
import sys

cols = ["step", "nll", "nll_ci", "kl_z", "kl_y", "key_std", "key_spread", "swap_gap", "swap_gap_ci"]
print("| run | " + " | ".join(cols) + " |")
print("|" + "---|" * (len(cols) + 1))
for path in sys.argv[1:]:
    for line in open(path):
        if line.startswith("{"):
            row = json.loads(line)
            print(
                f"| {path.rsplit('/', 1)[-1].removesuffix('.log')} | "
                + " | ".join(str(row.get(c, "–")) for c in cols)
                + " |"
            )
