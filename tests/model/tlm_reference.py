"""The TLM's modulation as it was before the fused rewrite (commit 34807eb), kept as a frozen reference.

Image groups by grid, boolean indexing of the valid anchors and a Python loop per grid: slow on a GPU
(host syncs), but the maths every later version must reproduce (tests/model/test_tlm_fused.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.tlm import TLM, gaussian_weights, resize_weights


def old_modulation(
    tlm: TLM,
    grid_thw: Tensor,
    features: Tensor,
    positions: Tensor,
    mask: Tensor | None = None,
    *,
    merge: int = 2,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor] | None:
    """gamma, beta (N, C) float32, exactly as TLM.modulation computed them at 34807eb (None: no anchor)."""
    valid = (
        torch.ones(features.shape[:2], dtype=torch.bool)
        if mask is None
        else mask.to(device=features.device, dtype=torch.bool)
    )
    grids = [tuple(g) for g in grid_thw.tolist()]
    sizes = [t * (h // merge) * (w // merge) for t, h, w in grids]
    anchored = valid.any(1).tolist()
    if not any(anchored):
        return None
    b, s = valid.shape
    params = features.new_zeros(b, s, 2 * tlm.hidden_size, dtype=torch.float32)
    params[valid] = tlm.anchor_params(features[valid], dtype)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, h, w) in enumerate(grids):
        if anchored[i]:
            groups.setdefault((h, w), []).append(i)
    per_image: list[Tensor | None] = [None] * len(grids)
    for (h, w), idx in groups.items():
        ix = torch.tensor(idx)
        with torch.no_grad():
            wts = gaussian_weights(
                positions[ix],
                valid[ix],
                h,
                w,
                tlm.cfg.sigma,
                patch_centres=tlm.cfg.patch_centres,
                eps=tlm.cfg.eps,
                normalization=tlm.cfg.normalization,
            )
            wts = resize_weights(wts, h, w, merge)
        fields = torch.bmm(wts, params[ix])
        for k, i in enumerate(idx):
            per_image[i] = fields[k]
    parts = [
        f.repeat(t, 1) if f is not None else params.new_zeros(sizes[i], 2 * tlm.hidden_size)
        for i, ((t, _, _), f) in enumerate(zip(grids, per_image, strict=True))
    ]
    gamma, beta = torch.cat(parts).chunk(2, dim=-1)
    return gamma, beta


def old_forward(
    tlm: TLM,
    tokens: Tensor,
    grid_thw: Tensor,
    features: Tensor,
    positions: Tensor,
    mask: Tensor | None = None,
    *,
    merge: int = 2,
) -> Tensor:
    """The old TLM.forward: x * (1 + gamma) + beta in float32, cast back; unanchored batches untouched."""
    fields = old_modulation(tlm, grid_thw, features, positions, mask, merge=merge, dtype=tokens.dtype)
    if fields is None:
        return tokens
    gamma, beta = fields
    return torch.addcmul(beta, tokens.float(), 1.0 + gamma).to(tokens.dtype)
