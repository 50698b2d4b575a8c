"""EBMM: Meta-Learning Deep Energy-Based Memory Models (papers/000) and the variants of the
independent reproduction (papers/001).

An episode is written by a few gradient steps on the writable ("memory") parameters of an energy
network E(x; θ); a query is read by projected Nesterov descent on the energy. Modules:

- ``energy``: the four energy architectures of App. B, batched over episodes (fast weights).
- ``write``: the writing loss E + α‖∇ₓE‖² + β‖θ − θ̄‖² (eq. 3, App. C), per term.
- ``read``: the projected Nesterov read with non-increasing meta-learned step sizes (App. A), and
  the learned-decoder read of papers/001.
- ``compiled``: write, read and loss as one ``torch.compile``'d training step (issue 15).
- ``ssim``: SSIM (Wang et al. 2004) for the SSIM+MSE loss of papers/001.
- ``memory``: the registered memories ``ebmm-strings``, ``ebmm-fc``, ``ebmm-conv``, ``ebmm-imagenet``.
"""
