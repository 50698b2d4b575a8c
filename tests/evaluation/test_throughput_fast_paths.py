"""Issue 15: every fast path computes the same as the plain code it replaces (1e-5 on a fixed batch)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.memories.base import build_memory
from engramlab.nn.fast import adam, fast_paths, fast_paths_enabled


def _strings_batch(b: int = 3, t: int = 6, n: int = 4) -> EpisodeBatch:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (b, t, 16), generator=gen).float() * 2 - 1
    flip = torch.where(torch.rand(b, n, 16, generator=gen) < 0.1, -1.0, 1.0)
    return EpisodeBatch(patterns=x, queries=x[:, :n] * flip, targets=x[:, :n].clone())


def _double(batch: EpisodeBatch) -> EpisodeBatch:
    return EpisodeBatch(
        patterns=batch.patterns.double(), queries=batch.queries.double(), targets=batch.targets.double()
    )


def _loss_and_grads(memory, batch):
    memory.zero_grad(set_to_none=True)
    loss, _ = memory.loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in memory.named_parameters() if p.grad is not None}


def _assert_same(memory, batch, tol=1e-5):
    with fast_paths(False):
        plain_loss, plain_grads = _loss_and_grads(memory, batch)
    fast_loss, fast_grads = _loss_and_grads(memory, batch)
    assert torch.allclose(fast_loss, plain_loss, rtol=tol, atol=tol), (fast_loss, plain_loss)
    assert plain_grads.keys() == fast_grads.keys()
    for name in plain_grads:
        scale = plain_grads[name].abs().max().clamp_min(1.0)
        err = (fast_grads[name] - plain_grads[name]).abs().max() / scale
        assert err < tol, f"{name}: {err}"


def test_switch_restores_state():
    assert fast_paths_enabled()
    with fast_paths(False):
        assert not fast_paths_enabled()
        with fast_paths(True):
            assert fast_paths_enabled()
        assert not fast_paths_enabled()
    assert fast_paths_enabled()


def test_gated_rnn_energy_fast_equals_plain():
    torch.manual_seed(0)
    for hops in (1, 3):
        mem = build_memory(
            "ebmm-strings",
            (16,),
            hidden_size=24,
            hops=hops,
            write_steps=2,
            read_steps=3,
            read_gamma=2.0,
            memory_bias_init=2.0,
            write_rule_options={"lr_init": [1.0, 1.0, 0.2]},
        )
        mem.double()
        batch = _double(_strings_batch())
        x = batch.patterns.clone().requires_grad_(True)
        fast = mem.energy_net.initial_fast(x.shape[0])
        with fast_paths(False):
            plain = mem.energy_net(x, fast)
        assert torch.allclose(mem.energy_net(x, fast), plain, rtol=1e-10, atol=1e-10)
        _assert_same(mem, batch, tol=1e-9)


def test_ebmm_strings_step_fast_equals_plain_float32():
    """In float32 both paths round: each is compared with the plain path in float64 (the fused and the unfused hops
    each came out ~6e-6 from it, on opposite sides, in a meta-gradient through 3 write and 5 read steps)."""
    torch.manual_seed(0)
    mem = build_memory(
        "ebmm-strings",
        (16,),
        hidden_size=32,
        write_steps=3,
        read_steps=5,
        read_gamma=2.0,
        memory_bias_init=2.0,
        write_rule_options={"lr_init": [1.0, 1.0, 0.2]},
    )
    batch = _strings_batch()
    exact = copy.deepcopy(mem).double()
    with fast_paths(False):
        exact_loss, exact_grads = _loss_and_grads(exact, _double(batch))
    for enabled in (True, False):
        with fast_paths(enabled):
            loss, grads = _loss_and_grads(mem, batch)
        assert torch.allclose(loss.double(), exact_loss, rtol=1e-5, atol=1e-5)
        for name, grad in grads.items():
            err = (grad.double() - exact_grads[name]).abs().max() / exact_grads[name].abs().max().clamp_min(1.0)
            assert err < 1e-5, f"fast paths {'on' if enabled else 'off'}, {name}: {err}"


def test_ebmm_conv_step_fast_equals_plain():
    torch.manual_seed(0)
    mem = build_memory("ebmm-conv", (1, 16, 16), channels=4, hidden_size=8, dynamic_size=2, write_steps=2,
                       read_steps=2, write_lr=0.1, read_gamma=0.5)  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 1, 16, 16, generator=gen)
    q = x.clone()
    q[..., :8, :8] = torch.rand(2, 3, 1, 8, 8, generator=gen)
    batch = EpisodeBatch(patterns=x, queries=q, targets=x.clone())
    fast = mem.energy_net.initial_fast(2)
    with fast_paths(False):
        plain = mem.energy_net(x, fast)
    assert torch.allclose(mem.energy_net(x, fast), plain, rtol=1e-5, atol=1e-5)
    _assert_same(mem, batch)


def test_adam_fast_path_is_fused_and_plain_is_not():
    params = [torch.nn.Parameter(torch.randn(3))]
    assert adam(params).defaults["fused"]
    with fast_paths(False):
        assert not adam(params, "adamw").defaults["fused"]
    assert not adam([torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))]).defaults["fused"]  # not fusable


def test_fused_adam_steps_equal_plain_steps():
    """Twenty Adam and AdamW steps (weight decay, param groups with their own lr) of the fused optimiser land on the
    same parameters as torch's per-tensor loop, to 1e-5."""
    for kind in ("adam", "adamw"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
        x, y = torch.randn(16, 6), torch.randn(16, 2)
        weights = {}
        for enabled in (True, False):
            net = copy.deepcopy(model)
            groups = [{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 3e-3}]
            with fast_paths(enabled):
                opt = adam(groups, kind, lr=1e-2, weight_decay=1e-2)
            for _ in range(20):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x), y).backward()
                opt.step()
            weights[enabled] = torch.cat([p.detach().flatten() for p in net.parameters()])
        assert not torch.equal(weights[True], torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert torch.allclose(weights[True], weights[False], rtol=1e-5, atol=1e-5), kind


def test_output_conv_fast_equals_plain():
    """The channels-last output convolution: same values and gradients as the plain Conv2d (1 and 2 channels)."""
    from engramlab.nn.fast import OutputConv2d

    for out_channels in (1, 2):
        torch.manual_seed(0)
        conv = OutputConv2d(8, out_channels, 3, padding=1)
        x = torch.randn(5, 8, 12, 12, requires_grad=True)
        outs = {}
        for enabled in (True, False):
            with fast_paths(enabled):
                y = conv(x)
                assert y.is_contiguous()
                grads = torch.autograd.grad(y.square().sum(), [x, conv.weight, conv.bias])
            outs[enabled] = (y.detach(), *grads)
        for fast, plain in zip(outs[True], outs[False]):
            torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_generative_decoders_fast_equal_plain():
    """VBM-Cat and Kanerva++ losses and gradients with the fast output convolution equal the plain ones (the same
    random draws and buffers in both)."""
    x = (torch.rand(2, 6, 1, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    fields = {
        "vbm-cat": dict(code=8, rows=4, width=8, likelihood="bernoulli"),
        "kanerva++": dict(encoder_width=8, latent=8, memory_size=8, window=4, writer_width=8, dense_width=16,
                          decoder_width=4, prior_width=4, read_steps=1, encoder_norm="group"),
    }  # fmt: skip
    for name, options in fields.items():
        torch.manual_seed(0)
        memory = build_memory(name, (1, 16, 16), **options)
        batch = EpisodeBatch(patterns=x)
        results, start = {}, copy.deepcopy(memory.state_dict())  # K++'s spectral norm updates a buffer per pass
        for enabled in (True, False):
            memory.load_state_dict(start)
            torch.manual_seed(1)
            with fast_paths(enabled):
                results[enabled] = _loss_and_grads(memory, batch)
        torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-5)
        for key, grad in results[False][1].items():
            scale = grad.abs().max().clamp_min(1.0)
            assert (results[True][1][key] - grad).abs().max() / scale < 1e-5, (name, key)


_FAULTS = """
import resource, sys, torch
from engramlab.nn.fast import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():
    x = torch.ones(10 << 20)  # 40 MiB: above the largest block glibc ever serves from its heap by default
    return float((x * 2).sum())
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
values = [step() for _ in range(10)]
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, values[-1])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_keep_freed_memory_stops_page_faults_of_repeated_large_tensors():
    """Each fresh process allocates and frees the same two 40 MiB tensors per step: glibc's default mmaps and
    page-faults them every step; after keep_freed_memory() they are reused from the heap (the values are equal)."""
    runs = {}
    for mode in ("keep", "default"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        kept, faults, value = out.stdout.split()
        runs[mode] = (kept, int(faults), float(value))
    if runs["keep"][0] != "True":
        pytest.skip("not glibc")
    assert runs["keep"][2] == runs["default"][2] == 2.0 * (10 << 20)
    assert runs["default"][1] > 100_000  # 2 tensors × 10240 pages × 10 steps
    assert runs["keep"][1] < runs["default"][1] / 5, runs  # the heap may still grow once while it settles
