"""Kanerva++ (Ramapuram, Wu, Kalousis, ICLR 2021): a deterministic, block-allocated latent memory.

Write (§3.3): a TSM-ResNet18 embeds the episode, E = f_enc(X) ∈ R^{T×D}; the mean over the
episode goes through a deep linear transposed-convolution writer to the memory M ∈ R^{C×S×S}
(3×64×64 in the paper). A key network maps each frame's embedding to q(Y_t|X) = N(μ, σ²) over K
keys y_tk ∈ R³ (Eq. 6). Read (§3.5, App. A): each key, squashed to a window inside the memory, crops
a block through a spatial transformer; the learned prior p(Z|M̂, Y) = N(μ_z, σ_z²) is a conv net on
the K stacked blocks. Training maximises the conditional ELBO (Eq. 4):

    L_T = E_q[ln p(x_t|z_t)] − KL[q(z_t|X) ‖ p(z_t|M̂_t, Y_t)] − KL[q(Y_t|X) ‖ N(0, I)]

where q(Z|X) is the "stable top branch", an isotropic Gaussian from E. The memory is
deterministic (M ~ δ[f_mem(f_enc(X))]), so there is no KL(M): L_T bounds the *conditional*
likelihood ln p(X|M) (NOTES.md, Evaluation conventions) and must be reported as such.

Iterative reading (Eq. 7): x̂ ← decode(mean of p(Z|M̂, Y*)), Y* = mean of q(Y|X = x̂), repeated.
Generation (§3.4): keys from p(Y) = N(0, I), or perturbations of given keys, read blocks, decode.

Dense-writer ablation (§4.2, Fig. 9): ``writer="dense"`` makes the memory a flat vector of the
same number of floats written by an MLP, and the prior an MLP on [memory, keys] — no blocks.

Deviations, stated: the key sample is μ + σ·ε (Eq. 6 writes σ²⊙ε); keys are squashed into the
memory (``squash_keys``) since the paper only says they are bounded in [-1, 1]; the decoder uses
GroupNorm+Swish in place of EvoNormS0; K++'s optimiser (LARS+Adam, one-cycle) is not reproduced.
Opt-in deviations studied for issue 13 (key-posterior collapse; defaults are the paper's model):
``key_spectral=False`` (no spectral norm on the key net), ``key_logvar_init`` (key net initialised with small
key variances), ``kl_y_free_bits`` (free bits on KL(Y) in the training loss only), ``write_embed`` (a per-frame
MLP before the episode pooling), ``posterior="residual"`` (q(z_t) as a residual around the memory prior,
so the decoder cannot bypass the memory), ``key_write`` / ``key_write_smooth`` (each frame also writes blocks at its
key means) and ``decoder_reads`` (p(x|z, M̂, Y)); the kanerva-likelihood cpu preset uses all but write_embed and
posterior; see ``KanervaPlusConfig`` and results/kanerva-ablation/diagnostics.

Example::

    kpp = build_memory("kanerva++", pattern_shape=(1, 28, 28))
    loss, logs = kpp.loss(EpisodeBatch(patterns=x))      # x: (B, T, 1, 28, 28) binary
    state = kpp.write(x); clean = kpp.read(noisy, state)  # iterative read, (B, N, 1, 28, 28)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import Memory, State, register
from engramlab.memories.kanerva.coders import (
    ImageCodersConfig,
    ImageDecoder,
    dense,
    gaussian_kl,
    group_norm,
    iterative_read,
    likelihood_and_encoder,
    reparameterise,
    split_gaussian,
)
from engramlab.nn.spatial_transformer import crop, squash_keys


@dataclass(frozen=True)
class KanervaPlusConfig(ImageCodersConfig):
    """Kanerva++ hyperparameters (paper values in brackets; defaults are CPU-sized).

    likelihood, dlml_mixtures, encoder_width [64], encoder_norm, decoder_width: see ``ImageCodersConfig``.
    latent: size L of z. memory_channels, memory_size: the memory is C×S×S [3×64×64].
    reads: K keys per frame [2]. window: side of each block read by the spatial transformer.
    writer_width: channels of the writer's first feature map, halved per layer [256].
    dense_width: width of the 3-layer spectrally normalised dense nets [512].
    writer: "block" (spatial-transformer reads, the paper's model) or "dense" (§4.2 ablation).
    read_steps: iterations of the iterative read. key_min_scale: smallest window half-width.
    key_spectral: spectral normalisation of the key network's layers (App. E: every dense model) [True].
    key_logvar_init: initial bias of the key log-variances (None: PyTorch's default init, ≈ 0 = the prior's).
    kl_y_free_bits: free bits (Kingma et al. 2016) on KL[q(Y_t|X) ‖ N(0, I)] in the *training loss* only: each of
        the 3K key dims pays max(KL_dim, λ), batch-averaged; 0 = the paper's loss. Reported ELBOs keep the exact KL.
    write_embed: 0 = pool the encoder's embedding (paper, §3.3); > 0 = pool a per-frame 2-layer MLP of that width
        (ReLU) of the embedding instead, so the pooled summary is wider than the CPU-sized encoder's (a deviation).
    posterior: "top" = the paper's stable top branch q(z_t|X) = N(μ(E_t), σ²(E_t)) (§3.5); "residual" = a
        residual posterior q(z_t|X, M̂_t, Y_t) = N(μ_p + Δμ(E_t), σ_p² · exp Δ(E_t)) around the memory prior
        p(z_t|M̂_t, Y_t) = N(μ_p, σ_p²) (as in NVAE, Vahdat & Kautz 2020) — a deviation: the decoder's input then
        starts from the memory readout instead of bypassing it. Still a valid conditional bound (q may depend on
        the memory and the sampled keys).
    key_write: block writer only (the dense ablation has no blocks and ignores it). Besides the feed-forward
        writer, each frame writes K blocks (a linear map of its embedding) at the windows of its key *means*,
        by the adjoint of the read (``paste``), summed over the episode: M = f_mem(pool E) + Σ_t,k paste(b_tk,
        μ_Y,tk). A deviation from §3.3; M stays a deterministic function of X, and a read finds a frame's
        block only if its sampled key is close to its key mean, so precise keys pay for their KL.
    key_write_smooth: with ``key_write``, each written block is a (window/f)² grid upsampled bilinearly by f, so that
        a read at a key sample away from the key mean (a shifted or zoomed window) still sees most of the block;
        1 = full-resolution blocks. A deviation (issue 13 probe).
    decoder_reads: the decoder sees the memory read as well as z: p(x_t|z_t, M̂_t, Y_t) (Eq. 4 writes the decoder
        as p_θ(X|Z, M, Y); §3.4: the read sub-regions "are used in the decoder"), through a second network like the
        prior's mapping the read to L features concatenated to z. False (default): p(x_t|z_t), the memory reaching
        the decoder only through the prior p(Z|M̂, Y). Opt-in: which the paper means is not settled by its text.
    """

    latent: int = 64
    memory_channels: int = 3
    memory_size: int = 32
    reads: int = 2
    window: int = 16
    writer_width: int = 64
    dense_width: int = 256
    prior_width: int = 32
    writer: Literal["block", "dense"] = "block"
    read_steps: int = 10
    key_min_scale: float = 0.1
    key_spectral: bool = True
    key_logvar_init: float | None = None
    kl_y_free_bits: float = 0.0
    write_embed: int = 0
    posterior: Literal["top", "residual"] = "top"
    key_write: bool = False
    key_write_smooth: int = 1
    decoder_reads: bool = False

    def __post_init__(self) -> None:
        if self.memory_size < 8 or self.memory_size & (self.memory_size - 1):
            raise BadConfig(f"memory_size must be a power of two >= 8, got {self.memory_size}")
        if self.window < 4 or self.window % 4 or self.window > self.memory_size:
            raise BadConfig(f"window must be a multiple of 4 in [4, memory_size], got {self.window}")
        if min(self.latent, self.reads, self.memory_channels, self.read_steps, self.dlml_mixtures) < 1:
            raise BadConfig("latent, reads, memory_channels, read_steps and dlml_mixtures must be >= 1")
        if self.key_write_smooth < 1 or self.window % self.key_write_smooth:
            raise BadConfig(f"key_write_smooth must be a divisor of window >= 1, got {self.key_write_smooth}")
        if not 0 < self.key_min_scale <= 1:
            raise BadConfig(f"key_min_scale must lie in (0, 1], got {self.key_min_scale}")


def paste(blocks: Tensor, keys: Tensor, memory_shape: torch.Size | tuple[int, ...]) -> Tensor:
    """The adjoint of ``crop``: blocks (B, N, C, w, w) written at the windows of keys (B, N, 3) -> (B, C, S, S),
    summed where windows overlap (<crop(M, keys), blocks> = <M, paste(blocks, keys)> for every M).
    Differentiable in the blocks and the keys (double backward through the bilinear sampler)."""
    graph = torch.is_grad_enabled()  # keep the graph to the blocks and keys unless called under no_grad
    with torch.enable_grad():
        zero = torch.zeros(memory_shape, dtype=blocks.dtype, device=blocks.device, requires_grad=True)
        read = crop(zero, keys, tuple(blocks.shape[-2:]), check=False)
        (written,) = torch.autograd.grad(read, zero, grad_outputs=blocks, create_graph=graph)
    return written if graph else written.detach()


@dataclass
class KanervaPlusState(State):
    """memory: (B, C, S, S) deterministic memory per episode (flat (B, C·S·S) for the dense writer)."""

    memory: Tensor


class MemoryWriter(nn.Module):
    """Pooled embedding (B, D) -> memory (B, C, S, S): a deep *linear* transposed-conv stack (App. E)."""

    def __init__(self, embed: int, channels: int, size: int, width: int):
        super().__init__()
        self.width = width
        self.project = nn.Linear(embed, width * 16)
        layers: list[nn.Module] = []
        c, s = width, 4
        while s < size:
            layers.append(nn.ConvTranspose2d(c, max(c // 2, 8), 4, 2, 1))
            c, s = max(c // 2, 8), 2 * s
        layers.append(nn.Conv2d(c, channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(self.project(pooled).reshape(-1, self.width, 4, 4))


class BlockPrior(nn.Module):
    """K stacked blocks (N, K·C, w, w) -> parameters (N, 2L) of p(Z|M̂, Y) (App. E, Learned Prior)."""

    def __init__(self, in_channels: int, window: int, latent: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1),
            group_norm(width),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            group_norm(2 * width),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * (window // 4) ** 2, 2 * latent),
        )

    def forward(self, blocks: Tensor) -> Tensor:
        return self.net(blocks)


@register("kanerva++")
class KanervaPlus(Memory):
    """Kanerva++ with spatial-transformer block reads (the paper's model); see the module docstring."""

    Config = KanervaPlusConfig
    generative = True
    default_pattern_shape = (1, 28, 28)
    default_writer: str = "block"

    def __init__(self, config: KanervaPlusConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        cfg = config
        self.likelihood, self.encoder = likelihood_and_encoder("Kanerva++", cfg, self.pattern_shape)
        c, h, w = self.pattern_shape
        if h < 8 or w < 8 or h % 4 or w % 4:
            raise BadConfig(f"Kanerva++ needs images at least 8×8 with sides divisible by 4, got {h}×{w}")
        d = self.encoder.out_dim
        self.z_posterior = nn.Linear(d, 2 * cfg.latent)  # q(z_t|X), the stable top branch (§3.5)
        key_sizes = [d, cfg.dense_width, cfg.dense_width, 2 * 3 * cfg.reads]
        self.key_posterior = dense(key_sizes, spectral=cfg.key_spectral)  # q(Y_t|X), Eq. 6
        if cfg.key_logvar_init is not None:
            with torch.no_grad():  # the last layer's outputs are [means (3K), log-variances (3K)]
                self.key_posterior[-1].bias[3 * cfg.reads :] = cfg.key_logvar_init
        self.memory_floats_ = cfg.memory_channels * cfg.memory_size**2
        self.write_head = None
        if cfg.write_embed > 0:  # per-frame φ(e_t) before pooling (deviation, see the config)
            self.write_head = nn.Sequential(
                nn.Linear(d, cfg.write_embed), nn.ReLU(), nn.Linear(cfg.write_embed, cfg.write_embed)
            )
        w_in = cfg.write_embed or d
        self.block_writer = None
        if cfg.writer == "block":
            self.writer = MemoryWriter(w_in, cfg.memory_channels, cfg.memory_size, cfg.writer_width)
            if cfg.key_write:  # per-frame blocks written at the key windows (deviation, see the config)
                side = cfg.window // cfg.key_write_smooth
                self.block_writer = nn.Linear(d, cfg.reads * cfg.memory_channels * side**2)
            self.prior = BlockPrior(cfg.reads * cfg.memory_channels, cfg.window, cfg.latent, cfg.prior_width)
            if cfg.decoder_reads:  # BlockPrior's architecture with L outputs (the second half of its 2L is unused)
                self.read_features = BlockPrior(
                    cfg.reads * cfg.memory_channels, cfg.window, cfg.latent, cfg.prior_width
                )
        else:  # §4.2: an equally sized dense memory and a dense prior on [memory, keys]
            self.writer = dense([w_in, cfg.dense_width, cfg.dense_width, self.memory_floats_])
            self.prior = dense([self.memory_floats_ + 3 * cfg.reads, cfg.dense_width, cfg.dense_width, 2 * cfg.latent])
            if cfg.decoder_reads:
                self.read_features = dense([self.memory_floats_ + 3 * cfg.reads, cfg.dense_width, 2 * cfg.latent])
        decoder_in = 2 * cfg.latent if cfg.decoder_reads else cfg.latent
        self.decoder = ImageDecoder(decoder_in, self.likelihood.param_channels(c), (h, w), cfg.decoder_width)

    # -- pieces --------------------------------------------------------------------------------
    def _embed(self, x: Tensor) -> Tensor:
        return self.encoder(2.0 * x - 1.0)  # (B, T, D); inputs on [-1, 1]

    def _keys(self, e: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor]:
        """-> raw key sample (B, T, K, 3), its mean and log-variance."""
        mu, logvar = split_gaussian(self.key_posterior(e))
        shape = (*e.shape[:2], self.config.reads, 3)
        mu, logvar = mu.reshape(shape), logvar.reshape(shape)
        return reparameterise(mu, logvar, sample), mu, logvar

    def _read(self, memory: Tensor, raw_keys: Tensor) -> Tensor:
        """Memory (B, ...) and raw keys (B, N, K, 3) -> what the prior reads: the K stacked blocks (B·N, K·C, w, w),
        or for the dense writer [memory, keys] (B, N, floats + 3K)."""
        cfg = self.config
        b, n = raw_keys.shape[:2]
        if cfg.writer == "dense":
            return torch.cat([memory.unsqueeze(1).expand(b, n, -1), raw_keys.reshape(b, n, -1)], -1)
        keys = squash_keys(raw_keys, cfg.key_min_scale)
        blocks = crop(memory, keys.reshape(b, n * cfg.reads, 3), (cfg.window, cfg.window), check=False)
        return blocks.reshape(b * n, cfg.reads * cfg.memory_channels, cfg.window, cfg.window)

    def _prior(self, memory: Tensor, raw_keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Memory (B, ...) and raw keys (B, N, K, 3) -> p(Z|M̂, Y) mean and log-variance (B, N, L), and the read."""
        b, n = raw_keys.shape[:2]
        read = self._read(memory, raw_keys)
        mu, logvar = split_gaussian(self.prior(read))
        return mu.reshape(b, n, -1), logvar.reshape(b, n, -1), read

    def _decode(self, z: Tensor, read: Tensor) -> Tensor:
        """z (B, N, L) and the memory read (``_read``) -> the likelihood's parameters; with ``decoder_reads`` the
        decoder also sees L features of the read (p(x|z, M̂, Y), Eq. 4)."""
        if self.config.decoder_reads:
            features = self.read_features(read)[..., : self.config.latent].reshape(z.shape)
            z = torch.cat([z, features], -1)
        return self.decoder(z)

    def _write_embedded(self, e: Tensor) -> KanervaPlusState:
        pooled = (e if self.write_head is None else self.write_head(e)).mean(1)
        memory = self.writer(pooled)  # pool over the episode, then write (§3.3)
        if self.block_writer is not None:  # key_write: each frame's blocks at its key-mean windows
            cfg = self.config
            b, t = e.shape[:2]
            key_mean = self._keys(e, sample=False)[1]
            keys = squash_keys(key_mean, cfg.key_min_scale).reshape(b, t * cfg.reads, 3)
            side = cfg.window // cfg.key_write_smooth
            blocks = self.block_writer(e).reshape(b * t * cfg.reads, cfg.memory_channels, side, side)
            if side != cfg.window:
                blocks = F.interpolate(blocks, size=(cfg.window, cfg.window), mode="bilinear", align_corners=False)
            blocks = blocks.reshape(b, t * cfg.reads, cfg.memory_channels, cfg.window, cfg.window)
            memory = memory + paste(blocks, keys, memory.shape)
        return KanervaPlusState(memory=memory)

    # -- the protocol --------------------------------------------------------------------------
    def write(self, episode: Tensor) -> KanervaPlusState:
        """(B, T, C, H, W) episode -> deterministic memory M = f_mem(mean_t f_enc(X)_t)."""
        self.check_patterns(episode)
        return self._write_embedded(self._embed(episode))

    def read(self, query: Tensor, state: KanervaPlusState, steps: int | None = None) -> Tensor:
        """Iterative read (Eq. 7): (B, N, C, H, W) queries -> (B, N, C, H, W) cleaned-up means."""
        return self.read_trajectory(query, state, steps)[-1]

    def read_trajectory(self, query: Tensor, state: KanervaPlusState, steps: int | None = None) -> list[Tensor]:
        """Every iterate of the iterative read, [x̂_1, ..., x̂_steps], each (B, N, C, H, W)."""
        self.check_patterns(query, "query")

        def step(x: Tensor) -> Tensor:
            _, key_mean, _ = self._keys(self._embed(x), sample=False)  # Y* from q(Y|X = x̂)
            mu, _, read = self._prior(state.memory, key_mean)
            return self.likelihood.mean(self._decode(mu, read))

        return iterative_read(query, self.config.read_steps if steps is None else steps, step)

    def generate(self, state: KanervaPlusState, n: int, raw_keys: Tensor | None = None) -> Tensor:
        """(B, n, C, H, W) samples: keys from p(Y) = N(0, I) (§3.4), or the given raw keys (B, n, K, 3)."""
        b = state.memory.shape[0]
        if raw_keys is None:
            raw_keys = torch.randn(b, n, self.config.reads, 3, device=state.memory.device)
        elif raw_keys.shape != (b, n, self.config.reads, 3):
            raise BadInput(f"raw_keys must have shape {(b, n, self.config.reads, 3)}, got {tuple(raw_keys.shape)}")
        z_mean, _, read = self._prior(state.memory, raw_keys)
        return self.likelihood.mean(self._decode(z_mean, read))

    def read_blocks(self, state: KanervaPlusState, keys: Tensor) -> Tensor:
        """Blocks at explicit keys (s, x, y): (B, N, 3) -> (B, N, C, window, window); keys outside raise."""
        if self.config.writer != "block":
            raise BadInput("the dense-writer ablation has no blocks to read")
        return crop(state.memory, keys, (self.config.window, self.config.window))

    def perturbed_keys(self, raw_keys: Tensor, n: int, scale: float = 0.1) -> Tensor:
        """(B, K, 3) keys -> (B, n, K, 3) local perturbations for key-perturbation generation (§4.1.1)."""
        return raw_keys.unsqueeze(1) + scale * torch.randn(raw_keys.shape[0], n, *raw_keys.shape[1:]).to(raw_keys)

    def elbo_terms(self, episode: Tensor, sample: bool = True, write_from: Tensor | None = None) -> dict[str, Tensor]:
        """Per-frame terms of the conditional ELBO (Eq. 4), each (B, T), in nats.

        rec = ln p(x_t|z_t); kl_z = KL[q(z_t|X) ‖ p(z_t|M̂_t, Y_t)]; kl_y = KL[q(Y_t|X) ‖ N(0, I)];
        nll = −(rec − kl_z − kl_y), the negative conditional ELBO per image.
        ``write_from`` (B, T', C, H, W): write the memory from these episodes instead of ``episode``
        (the memory-swap test, ``engramlab.evaluation.swap``); q(z|X) and q(Y|X) still see ``episode``.
        """
        return self._terms(episode, sample, write_from)[0]

    def _terms(self, episode: Tensor, sample: bool, write_from: Tensor | None) -> tuple[dict[str, Tensor], Tensor]:
        """``elbo_terms`` and the per-dim key KL (B, T, 3K)."""
        self.check_patterns(episode)
        e = self._embed(episode)
        if write_from is None:
            state = self._write_embedded(e)
        else:
            state = self.write(write_from)
        keys, key_mu, key_logvar = self._keys(e, sample)
        prior_mu, prior_logvar, read = self._prior(state.memory, keys)
        z_mu, z_logvar = split_gaussian(self.z_posterior(e))
        if self.config.posterior == "residual":  # q = N(μ_p + Δμ, σ_p² e^Δ): a residual around the memory prior
            z_mu, z_logvar = prior_mu + z_mu, (prior_logvar + z_logvar).clamp(-10.0, 6.0)
        z = reparameterise(z_mu, z_logvar, sample)
        rec = self.likelihood.log_prob(self._decode(z, read), episode)
        kl_z = gaussian_kl(z_mu, z_logvar, prior_mu, prior_logvar)
        kl_y_dims = 0.5 * (key_logvar.exp() + key_mu.square() - 1.0 - key_logvar).flatten(-2)
        kl_y = kl_y_dims.sum(-1)
        return {"rec": rec, "kl_z": kl_z, "kl_y": kl_y, "nll": -(rec - kl_z - kl_y)}, kl_y_dims

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative conditional ELBO per image (nats), averaged over frames and episodes."""
        terms, kl_y_dims = self._terms(batch.patterns, True, None)
        loss = terms["nll"].mean()
        if self.config.kl_y_free_bits > 0:  # free bits: Σ_dim max(batch-mean KL_dim, λ) replaces the key KL
            free = kl_y_dims.flatten(0, 1).mean(0).clamp(min=self.config.kl_y_free_bits).sum()
            loss = loss - terms["kl_y"].mean() + free
        return loss, {k: v.mean().detach() for k, v in terms.items()}

    def memory_floats(self, episode_length: int | None = None) -> int:
        return self.memory_floats_


@register("kanerva++-dense")
class KanervaPlusDense(KanervaPlus):
    """The dense-writer ablation of Kanerva++ (§4.2, Fig. 9): same model, ``writer="dense"``."""

    def __init__(self, config: KanervaPlusConfig, pattern_shape: tuple[int, ...]):
        if config.writer != "dense":
            config = dataclasses.replace(config, writer="dense")
        super().__init__(config, pattern_shape)
