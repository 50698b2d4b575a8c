"""The Kanerva benchmark plumbing: fixed episodes, and the speed suite end to end on a tiny budget."""

import json

from engramlab.evaluation import bench
from engramlab.evaluation.suites import kanerva_speed


def test_speed_suite_writes_a_table_with_the_dkm_over_kpp_ratio(tmp_path, monkeypatch):
    tiny = {**kanerva_speed.QUICK, "batch_size": 2, "lengths": [4], "base_length": 4, "kpp_sizes": [16],
            "dkm_slots": [8], "warmup": 1, "timed": 2}  # fmt: skip
    tiny["models"] = {
        "kanerva++": {"encoder_width": 8, "latent": 8, "memory_size": 16, "window": 8, "writer_width": 16,
                      "dense_width": 16, "decoder_width": 8, "prior_width": 8},
        "dkm": {"encoder_width": 8, "code_size": 8, "memory_slots": 8, "decoder_width": 8},
    }  # fmt: skip
    monkeypatch.setattr(kanerva_speed, "QUICK", tiny)
    paths = bench.run_suite("kanerva-speed", quick=True, out_root=tmp_path, progress=False)
    record = json.loads(paths["json"].read_text())
    assert {r["model"] for r in record["rows"]} == {"kanerva++", "dkm"}
    assert all(r["dkm_over_kpp"] > 0 for r in record["rows"] if r["model"] == "dkm")
