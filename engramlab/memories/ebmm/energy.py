"""Energy architectures of EBMM (papers/000, App. B), batched over episodes.

Every network maps patterns ``x`` (B, N, *pattern) and per-episode fast weights ``fast`` to energies
(B, N). Only modules named ``memory`` are writable (App. B: "All modules containing memory parameters
are specifically named as memory"); their per-episode copies live in ``fast`` (dict name -> tensor
with a leading B), keyed by the parameter's dotted name (``memory.weight``, ``block4.memory.bias``).
Memory layers are written as batched matmuls (``baddbmm``) or grouped convolutions (one group per
episode), so a write or read of B episodes is one call, without a Python loop over episodes.
Everything else is static (meta-learned) and applied to the flattened (B·N) batch.

Smooth nonlinearities (tanh, sigmoid) throughout: the write differentiates ∇ₓE once more (App. C).
"LayerNorm" on feature maps is ``GroupNorm(1, C)`` (normalisation over C, H, W) [inferred].

Example::

    net = GatedRNNEnergy(input_size=128)
    fast = net.initial_fast(batch_size=4)          # θ̄ repeated per episode
    energies = net(x, fast)                        # (4, N, 128) -> (4, N)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engramlab.nn.fast import fast_paths_enabled

FastParams = dict[str, Tensor]


def _down(size: int) -> int:
    """Spatial size after a 3×3 stride-2 conv (padding 1) or 3×3 stride-2 average pool (padding 1)."""
    return (size - 1) // 2 + 1


class MemoryLinear(nn.Linear):
    """A writable Linear: its ``weight``/``bias`` are θ̄; ``forward`` uses the per-episode copies.

    x: (B, N, in) -> (B, N, out) with weight (B, out, in) and bias (B, out) from ``fast``.
    """

    fast_key = ""

    def forward(self, x: Tensor, fast: FastParams) -> Tensor:  # type: ignore[override]
        weight, bias = fast[self.fast_key + "weight"], fast[self.fast_key + "bias"]
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class MemoryConv2d(nn.Conv2d):
    """A writable Conv2d applied per episode as one grouped convolution (one group per episode).

    x: (B, N, C, H, W) -> (B, N, O, H', W') with weight (B, O, C, k, k) and bias (B, O) from ``fast``.
    """

    fast_key = ""

    def forward(self, x: Tensor, fast: FastParams) -> Tensor:  # type: ignore[override]
        weight, bias = fast[self.fast_key + "weight"], fast[self.fast_key + "bias"]
        b, n, c, h, w = x.shape
        out = weight.shape[1]
        y = F.conv2d(
            x.transpose(0, 1).reshape(n, b * c, h, w),
            weight.reshape(b * out, *weight.shape[2:]),
            bias.reshape(b * out),
            stride=self.stride,
            padding=self.padding,
            groups=b,
        )
        return y.reshape(n, b, out, *y.shape[-2:]).transpose(0, 1)


class EnergyNet(nn.Module):
    """Base of the energy networks: fast-weight bookkeeping and He initialisation (App. D)."""

    def finish_init(self) -> None:
        """Give every memory layer its key into ``fast`` and apply He initialisation."""
        for name, module in self.named_modules():
            if isinstance(module, (MemoryLinear, MemoryConv2d)):
                module.fast_key = f"{name}." if name else ""
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="linear")  # He init (App. D)
                nn.init.zeros_(module.bias)

    def memory_names(self) -> list[str]:
        """Dotted names of the writable parameters (those inside modules named ``memory``)."""
        return [name for name, _ in self.named_parameters() if "memory" in name.split(".")[:-1]]

    def memory_floats(self, episode_length: int | None = None) -> int:
        """Writable floats per episode."""
        params = dict(self.named_parameters())
        return sum(params[n].numel() for n in self.memory_names())

    def initial_fast(self, batch_size: int) -> FastParams:
        """θ̄ repeated for B episodes (differentiable with respect to θ̄)."""
        params = dict(self.named_parameters())
        return {n: params[n].unsqueeze(0).expand(batch_size, *params[n].shape) for n in self.memory_names()}

    def forward(self, x: Tensor, fast: FastParams) -> Tensor:
        raise NotImplementedError


class GatedRNNEnergy(EnergyNet):
    """Gated RNN energy for binary strings (App. B.1): update gate only, 5 hops.

    ``memory = Linear(input_size, (input_size − 1) // 2)``: 8127 writable floats for 128-bit strings,
    the size of a 128-unit Hopfield net (128·127/2 = 8128 weights). x: (B, N, D) -> (B, N).
    """

    def __init__(self, input_size: int = 128, hidden_size: int = 1024, hops: int = 5, dynamic_size: int | None = None):
        super().__init__()
        dynamic = (input_size - 1) // 2 if dynamic_size is None else dynamic_size
        self.hops = hops
        self.hidden_size = hidden_size
        self.memory = MemoryLinear(input_size, dynamic)
        self.gate = nn.Linear(input_size + hidden_size, hidden_size)
        self.static = nn.Linear(input_size + hidden_size, hidden_size - dynamic)
        self.energy = nn.Linear(hidden_size, 1)
        self.finish_init()

    def forward(self, x: Tensor, fast: FastParams) -> Tensor:
        if fast_paths_enabled() and self.hops >= 1:
            return self._forward_fast(x, fast)
        dynamic = self.memory(x, fast)  # the memory sees x only, so it is the same at every hop (B.1)
        state = x.new_zeros(*x.shape[:-1], self.hidden_size)
        for _ in range(self.hops):
            z = torch.cat([x, state], -1)
            c = torch.tanh(torch.cat([dynamic, self.static(z)], -1))
            u = torch.sigmoid(self.gate(z))
            state = u * c + (1 - u) * state
        return self.energy(state).squeeze(-1)

    def _forward_fast(self, x: Tensor, fast: FastParams) -> Tensor:
        """The same energy with fewer and larger operations (issue 15): the x-halves of the static and gate
        layers are applied once for all hops (x does not change between hops), their state-halves are one
        matmul per hop (the two weight blocks side by side), hop 1 skips the zero state, tanh of the memory
        part is taken once, and the update u·c + (1 − u)·s is one ``lerp``."""
        d = x.shape[-1]
        flat = x.reshape(-1, d)
        dynamic = torch.tanh(self.memory(x, fast)).reshape(flat.shape[0], -1)
        k = self.static.out_features
        weight = torch.cat([self.static.weight, self.gate.weight], 0)  # (k + hidden, d + hidden)
        pre_x = torch.addmm(torch.cat([self.static.bias, self.gate.bias]), flat, weight[:, :d].t())
        static_x, gate_x = pre_x.split([k, self.hidden_size], 1)
        state = torch.sigmoid(gate_x) * torch.cat([dynamic, torch.tanh(static_x)], -1)  # hop 1: state 0
        w_state = weight[:, d:].t()
        for _ in range(self.hops - 1):
            static_pre, gate_pre = torch.addmm(pre_x, state, w_state).split([k, self.hidden_size], 1)
            state = torch.lerp(state, torch.cat([dynamic, torch.tanh(static_pre)], -1), torch.sigmoid(gate_pre))
        return torch.addmm(self.energy.bias, state, self.energy.weight.t()).view(x.shape[:-1])


class ResBlock(nn.Module):
    """Static ResBlock (3×3 convs, stride 2) of the encoders: tanh(norm(conv(tanh(norm(conv x))) + skip x))."""

    def __init__(self, in_channels: int, channels: int, stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1)
        self.norm1 = nn.GroupNorm(1, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, channels, 1, stride)
        self.norm2 = nn.GroupNorm(1, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.norm1(self.conv1(x)))
        return torch.tanh(self.norm2(self.conv2(h) + self.skip(x)))


class ResNetFCEnergy(EnergyNet):
    """ResNet encoder + fully-connected memory (App. B.2). x: (B, N, C, H, W) -> (B, N).

    Encoder: ResBlocks of 32, 64, 96 channels (stride 2), Linear(256) + LayerNorm; then
    ``memory = Linear(256, dynamic_size)`` beside a static Linear(512 − dynamic_size), tanh; 3 gated
    hops of hidden 512; energy = Linear(1)(tanh(Linear(1024)(state))).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: int = 32,
        dynamic_size: int = 128,
        hidden_size: int = 512,
        hops: int = 3,
        embed_size: int = 256,
    ):
        super().__init__()
        self.hops, self.hidden_size = hops, hidden_size
        self.encoder = nn.Sequential(
            ResBlock(in_channels, channels),
            ResBlock(channels, channels * 2),
            ResBlock(channels * 2, channels * 3),
        )
        side = _down(_down(_down(image_size)))
        self.embed = nn.Linear(channels * 3 * side * side, embed_size)
        self.embed_norm = nn.LayerNorm(embed_size)
        self.memory = MemoryLinear(embed_size, dynamic_size)
        self.static = nn.Linear(embed_size, hidden_size - dynamic_size)  # representation_size = hidden_size
        self.hidden = nn.Linear(2 * hidden_size, hidden_size)
        self.hidden_norm = nn.LayerNorm(hidden_size)
        self.gate = nn.Linear(2 * hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, 1024)
        self.energy = nn.Linear(1024, 1)
        self.finish_init()

    def forward(self, x: Tensor, fast: FastParams) -> Tensor:
        b, n = x.shape[:2]
        h = self.embed_norm(self.embed(self.encoder(x.flatten(0, 1)).flatten(1)))
        dynamic = self.memory(h.unflatten(0, (b, n)), fast).flatten(0, 1)
        x = torch.tanh(torch.cat([dynamic, self.static(h)], -1))
        state = x.new_zeros(x.shape[0], self.hidden_size)
        for _ in range(self.hops):
            z = torch.cat([x, state], -1)
            c = self.hidden_norm(torch.tanh(self.hidden(z)))
            u = torch.sigmoid(self.gate(z))
            state = u * c + (1 - u) * state  # the pseudocode's "(1 - u) * c" read as the usual GRU update
        return self.energy(torch.tanh(self.head(state))).view(b, n)


class Bottleneck(nn.Module):
    """Bottleneck block whose 3×3 conv is split into a writable ``memory`` and a static part (B.3)."""

    def __init__(self, in_channels: int, channels: int, bottleneck: int, dynamic_size: int, downscale: bool):
        super().__init__()
        stride = 2 if downscale else 1
        self.downscale = downscale
        self.reduce = nn.Conv2d(in_channels, bottleneck, 1)
        self.reduce_norm = nn.GroupNorm(1, bottleneck)
        self.memory = MemoryConv2d(bottleneck, dynamic_size, 3, stride, 1)
        self.static = nn.Conv2d(bottleneck, channels - dynamic_size, 3, stride, 1)
        self.norm = nn.GroupNorm(1, channels)
        self.skip = nn.Conv2d(in_channels, channels, 1)

    def forward(self, x: Tensor, fast: FastParams, episodes: int) -> Tensor:
        """x: (B·N, C, H, W) -> (B·N, channels, H', W'); ``episodes`` = B."""
        b, n = episodes, x.shape[0] // episodes
        h = torch.tanh(self.reduce_norm(self.reduce(x)))
        memory_part = self.memory(h.unflatten(0, (b, n)), fast).flatten(0, 1)
        y = torch.tanh(self.norm(torch.cat([self.static(h), memory_part], 1)))
        z = self.skip(x)
        if self.downscale:
            z = F.avg_pool2d(z, 3, 2, 1, count_include_pad=False)
        return y + z


class ResNetConvEnergy(EnergyNet):
    """ResNet + convolutional memory (App. B.3; B.4 with the ImageNet sizes). x: (B, N, C, H, W) -> (B, N).

    Two stride-2 ResBlocks, two bottleneck blocks with writable 3×3 convs of ``dynamic_size`` channels
    (the second, or with ``imagenet=True`` both, downscaling), 3 gated convolutional hops of
    ``hidden_size`` channels on the 4×4 grid, energy = Linear(1)(tanh(Linear(1024)(state))).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: int = 32,
        dynamic_size: int = 8,
        hidden_size: int = 128,
        hops: int = 3,
        imagenet: bool = False,
    ):
        super().__init__()
        self.hops, self.hidden_size = hops, hidden_size
        self.encoder = nn.Sequential(ResBlock(in_channels, channels), ResBlock(channels, channels * 2))
        side = _down(_down(image_size))
        self.block3 = Bottleneck(channels * 2, channels * 4, channels * 2, dynamic_size, downscale=imagenet)
        side = _down(side) if imagenet else side
        self.block4 = Bottleneck(channels * 4, channels * 4, channels * 2, dynamic_size, downscale=True)
        side = _down(side)
        self.side = side
        self.recurrent = nn.Conv2d(channels * 4 + hidden_size, hidden_size, 3, 1, 1)
        self.recurrent_norm = nn.GroupNorm(1, hidden_size)
        self.update_gate = nn.Conv2d(channels * 4 + hidden_size, hidden_size, 1)
        self.gate_norm = nn.GroupNorm(1, hidden_size)
        self.head = nn.Linear(hidden_size * side * side, 1024)
        self.energy = nn.Linear(1024, 1)
        self.finish_init()

    def forward(self, x: Tensor, fast: FastParams) -> Tensor:
        b, n = x.shape[:2]
        h = self.encoder(x.flatten(0, 1))
        h = self.block4(self.block3(h, fast, b), fast, b)
        if fast_paths_enabled() and self.hops >= 1:
            state = self._hops_fast(h)
            return self.energy(torch.tanh(self.head(state.flatten(1)))).view(b, n)
        state = h.new_zeros(h.shape[0], self.hidden_size, *h.shape[-2:])
        for _ in range(self.hops):
            z = torch.cat([h, state], 1)
            candidate = torch.tanh(self.recurrent_norm(self.recurrent(z)))
            u = torch.sigmoid(self.gate_norm(self.update_gate(z)))
            state = u * candidate + (1 - u) * state
        return self.energy(torch.tanh(self.head(state.flatten(1)))).view(b, n)

    def _hops_fast(self, h: Tensor) -> Tensor:
        """The gated hops with the same math in fewer FLOPs (issue 15): a convolution of cat([h, state]) is the sum
        of convolutions of h and of the state with the two halves of the kernel, and h does not change between
        hops, so its half is applied once; hop 1 skips the zero state; u·c + (1 − u)·s is one ``lerp``."""
        c = h.shape[1]
        rec, gate = self.recurrent, self.update_gate
        rec_h = F.conv2d(h, rec.weight[:, :c], rec.bias, rec.stride, rec.padding)
        gate_h = F.conv2d(h, gate.weight[:, :c], gate.bias, gate.stride, gate.padding)
        rec_s, gate_s = rec.weight[:, c:], gate.weight[:, c:]
        state = torch.sigmoid(self.gate_norm(gate_h)) * torch.tanh(self.recurrent_norm(rec_h))  # hop 1: state 0
        for _ in range(self.hops - 1):
            candidate = torch.tanh(self.recurrent_norm(rec_h + F.conv2d(state, rec_s, None, rec.stride, rec.padding)))
            u = torch.sigmoid(self.gate_norm(gate_h + F.conv2d(state, gate_s, None, gate.stride, gate.padding)))
            state = torch.lerp(state, candidate, u)
        return state
