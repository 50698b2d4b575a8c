"""Issue 12 probe: how far the EBMM-conv write moves its memory weights; how much of the move is episode-specific."""

import torch

from engramlab.evaluation.suites import ebmm_omniglot as eo
from engramlab.memories.base import build_memory
from engramlab.training.checkpoint import load_weights

torch.set_num_threads(1)
b = eo.CPU
batch = eo.source("omniglot", b, "test", 0).fixed_batches(1)[0]
for kind, d in [("conv", 8), ("conv", 2)]:
    arch = {k: v for k, v in b[kind].items() if k != "dynamic_size"}
    m = build_memory(f"ebmm-{kind}", tuple(batch.patterns.shape[2:]), dynamic_size=d, **arch, **b["ebmm"])
    load_weights(f"results/ebmm-omniglot/cpu-work/ebmm-{kind}-d{d}/step-00001500", m)
    m.eval()
    for n, p in m.named_parameters():
        if "rule" in n or "reader" in n:
            print(n, [round(x, 4) for x in torch.nn.functional.softplus(p.detach()).flatten().tolist()][:12])
    st = m.write(batch.patterns)
    anchor = m.energy_net.initial_fast(4)
    for n in st.fast:
        delta = st.fast[n].detach() - anchor[n].detach()
        spec = (delta - delta.mean(0, keepdim=True)).norm() / delta.norm()
        rel = (delta.norm() / anchor[n].norm()).item()
        print(kind, d, n, "rel change", round(rel, 4), "episode-specific share", round(spec.item(), 3))
