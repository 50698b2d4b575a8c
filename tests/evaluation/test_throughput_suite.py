"""Issue 15: the throughput suite's measurements (FLOP counting, peak, rows) on tiny cases."""

from __future__ import annotations

import time

import pytest
import torch

from engramlab.evaluation.suites import throughput as tp


def test_peak_positive():
    times = tp.matmul_seconds(2, size=128)
    assert len(times) == 2 and tp.peak_gflops(times, size=128) > 0


def test_every_family_has_quick_and_paper_case():
    families = {}
    for case in tp.cases():
        families.setdefault(case.family, set()).add(case.size)
    expected = {"ebmm-strings", "ebmm-conv", "vbm-gauss", "vbm-cat", "kanerva++", "dkm", "mplp-mnist",
                "modern-hopfield-learned"}  # fmt: skip
    assert set(families) == expected
    assert all(sizes == {"quick", "paper"} for sizes in families.values())


def test_ebmm_and_mplp_are_also_measured_compiled():
    compiled = [c for c in tp.cases() if c.compiled]
    assert {(c.family, c.size) for c in compiled} == {
        (f, s) for f in ("ebmm-strings", "ebmm-conv", "mplp-mnist") for s in ("quick", "paper")
    }
    # ebmm-conv's compilation (~15 min) is not in the quick preset
    assert tp.QUICK["compiled"] == ("ebmm-strings", "mplp-mnist")
    model, _, _ = compiled[0].make()
    assert model.config.compile
    (mplp,) = [c for c in compiled if (c.family, c.size) == ("mplp-mnist", "quick")]
    assert mplp.make()[0].rule.compile_cells
    plain = [c for c in tp.cases() if (c.family, c.size, c.compiled) == ("mplp-mnist", "quick", False)]
    assert not plain[0].make()[0].rule.compile_cells
    assert tp.label({"family": "ebmm-strings", "size": "quick", "compiled": True}) == "ebmm-strings (quick, compiled)"


@pytest.mark.parametrize("family", ["ebmm-strings", "ebmm-conv", "vbm-gauss", "kanerva++", "dkm"])
def test_every_quick_step_is_counted_whole(family):
    """Every matmul or convolution kernel a family's step calls is one the FLOP counter knows; convolution
    families count their backward convolutions (the first suite missed transposed and double-backward ones)."""
    (case,) = [c for c in tp.cases() if (c.family, c.size, c.compiled) == (family, "quick", False)]
    torch.manual_seed(0)
    count = tp.count_flops(tp.make_step(*case.make()))
    assert count.total > 0 and not count.uncounted
    if family != "ebmm-strings":
        assert count.by_kind["conv_backward"] > 0 and count.by_kind["conv"] > 0


def test_run_cases_rows_and_thread_restore():
    budget = {**tp.QUICK, "min_blocks": 2, "max_blocks": 2, "seconds_per_case": 0.0, "peak_repeats": 1,
              "allocator_rounds": 1, "allocator_steps": 1}  # fmt: skip
    selected = [c for c in tp.cases() if c.family == "modern-hopfield-learned" and c.size == "quick"]
    threads = torch.get_num_threads()
    rows = tp.run_cases(budget, selected)
    assert torch.get_num_threads() == threads
    (row,) = rows
    for column in tp.COLUMNS:
        assert column in row
    assert row["threads"] == 1 and row["timed_steps"] >= 2 and row["timed_steps"] % 2 == 0  # 2 blocks
    assert row["gflop_per_step"] > 0 and 0 < row["fraction_of_peak"]
    assert sum(row["gflop_by_kind"].values()) == pytest.approx(row["gflop_per_step"]) and row["uncounted_ops"] == []
    assert row["kernel_ms"] > 0 and row["kernel_share"] == pytest.approx(row["kernel_ms"] / row["ms_per_step"])
    assert row["kernel_fraction_of_peak"] > 0
    # every family has a fast path (fused Adam): the plain step is timed beside it
    assert row["speedup_vs_plain"] > 0 and row["plain_ms_per_step"] > 0
    # the same step in two fresh processes, glibc's default malloc and keep_freed_memory()
    assert row["default_malloc_ms"] > 0 and row["kept_memory_ms"] > 0
    assert row["total_speedup"] == pytest.approx(row["speedup_vs_plain"] * row["allocator_speedup"])


def test_timed_pair_alternates_blocks_of_consecutive_steps(monkeypatch):
    """Fast and plain steps run in blocks (about BLOCK_SECONDS of consecutive steps), fast first, the same number
    of each; the counts bound the pairs of blocks."""
    monkeypatch.setattr(tp, "BLOCK_SECONDS", 0.02)
    calls = []

    def step():
        calls.append(tp.fast_paths_enabled())
        time.sleep(0.004)

    fast, plain = tp.timed_pair(step, warmup=1, min_blocks=3, max_blocks=3, seconds=0.0)
    timed = calls[3:]  # warm-up: one fast and one plain step, then the step that sizes the blocks
    block = len(fast) // 3
    assert 2 <= block <= 8 and len(fast) == len(plain) == 3 * block
    assert timed == ([True] * block + [False] * block) * 3
    assert all(t >= 0.004 for t in fast + plain)


def test_isolated_rows_are_measured_in_a_child_and_resumed_from_the_work_dir(tmp_path):
    """cpu/full measure each case in a fresh process; every finished row is saved, and --resume keeps it."""
    assert tp.CPU["isolate"] and tp.FULL["isolate"] and not tp.QUICK["isolate"]
    budget = {**tp.QUICK, "isolate": True, "min_blocks": 1, "max_blocks": 1, "seconds_per_case": 0.0,
              "peak_repeats": 1, "allocator_rounds": 0}  # fmt: skip
    selected = [c for c in tp.cases() if c.family == "modern-hopfield-learned" and c.size == "quick"]
    (row,) = tp.run_cases(budget, selected, work_dir=tmp_path)
    assert row["family"] == "modern-hopfield-learned" and row["threads"] == 1 and row["ms_per_step"] > 0
    assert (tmp_path / "rows.jsonl").read_text().count("\n") == 1
    lines = []
    (again,) = tp.run_cases(budget, selected, lines.append, work_dir=tmp_path, resume=True)
    assert again == row and lines == ["modern-hopfield-learned (quick): kept from the interrupted run (--resume)"]
    other = {**budget, "min_blocks": 2, "max_blocks": 2}  # another budget: measured anew, not kept
    (fresh,) = tp.run_cases(other, selected, lines.append, work_dir=tmp_path, resume=True)
    assert fresh["timed_steps"] >= 2 and len(lines) == 2


def _tiny_case(family: str) -> tp.Case:
    from engramlab.memories.base import build_memory

    def make():
        gen = torch.Generator().manual_seed(0)
        if family == "ebmm-strings":
            memory = build_memory("ebmm-strings", (128,), hidden_size=80, write_steps=1, read_steps=1)
            return memory, tp._strings(2, 4, 4, gen), {"clip": 1.0}
        memory = build_memory("ebmm-conv", (1, 32, 32), channels=2, hidden_size=4, dynamic_size=2, write_steps=1,
                              read_steps=1)  # fmt: skip
        return memory, tp._images(2, 2, (1, 32, 32), gen, False, True), {}

    return tp.Case(family, "quick", "tiny", make, loop=True, episodes=2, length=2)


@pytest.mark.slow
def test_batched_vs_loop_columns_for_both_ebmm_families():
    # allocator_rounds 0: the tiny cases exist in this process only, a child process cannot build them
    budget = {**tp.QUICK, "min_blocks": 1, "max_blocks": 1, "seconds_per_case": 0.0, "peak_repeats": 1,
              "loop_repeats": 1, "loops": {"ebmm-strings": ["quick"], "ebmm-conv": ["quick"]},
              "allocator_rounds": 0}  # fmt: skip
    rows = tp.run_cases(budget, [_tiny_case("ebmm-strings"), _tiny_case("ebmm-conv")])
    for row in rows:
        assert row["batched_vs_loop"] > 0 and row["plain_batched_vs_loop"] > 0
        assert row["loop"]["loop_episodes"] == tp.LOOP_EPISODES
        assert row["speedup_vs_plain"] > 0 and row["plain_ms_per_step"] > 0
    assert rows[0]["loop"]["T"] == 32 and rows[1]["loop"]["T"] == 2
