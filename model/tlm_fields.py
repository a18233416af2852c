"""The TLM's spatial maths: Gaussian anchor weights, their resize to the merged token grid, the modulation.

Two ways to the same numbers:
- `gaussian_weights` + `resize_weights`: one grid size at a time, on the full pre-merge patch grid (the
  reference, and the shape of the published recipe);
- `token_weights`: a whole batch of images of any grids in one pass of tensor ops. Its shapes come from a
  host-side `TokenLayout` (built once from image_grid_thw), so it has no host-device sync, no boolean
  indexing and no data-dependent Python branch: it runs as a handful of kernels and traces under
  torch.compile(fullgraph=True). It evaluates the Gaussians only at the patch rows / columns the bilinear
  resize reads (all of them at merge 2, the middle one at odd merges), then resizes in the same order of
  additions as `resize_weights`, so at merge 2 the result is the same arithmetic as the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NORMALIZATIONS = ("eps", "softmax", "release")


def _normalized(ly: Tensor, lx: Tensor, keep: Tensor | None, normalization: str, eps: float) -> Tensor:
    """Normalized weights of every (row, column) pair over the anchors, from separable log-weights.

    ly (B, R, S) and lx (B, K, S) log-weights of R rows and K columns; keep (B, S) bool or None.
    Returns (B, R * K, S), row-major. See `gaussian_weights` for what each normalization means.
    """
    b, r, s = ly.shape
    k = lx.shape[1]
    if normalization == "softmax":
        logits = (ly[:, :, None, :] + lx[:, None, :, :]).reshape(b, r * k, s)  # (B, RK, S)
        if keep is not None:
            logits = logits.masked_fill(~keep[:, None, :], float("-inf"))
        return torch.nan_to_num(torch.softmax(logits, dim=-1), nan=0.0)  # no valid anchor: NaN -> 0
    if normalization not in ("eps", "release"):
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    # The Gaussian is separable: exp on (R + K) * S values, one product on R * K * S.
    ey, ex = torch.exp(ly), torch.exp(lx)
    if normalization == "release":
        raw = (ey[:, :, None, :] * ex[:, None, :, :]).reshape(b, r * k, s)  # (B, RK, S)
        w = raw / (raw.sum(-1, keepdim=True) + eps)
        if keep is not None:
            w = w * keep[:, None, :].to(w.dtype)
        return w / (w.sum(-1, keepdim=True) + eps)
    if keep is not None:
        ex = ex * keep[:, None, :].to(ex.dtype)
    w = (ey[:, :, None, :] * ex[:, None, :, :]).reshape(b, r * k, s)  # (B, RK, S)
    total = torch.bmm(ey, ex.transpose(1, 2)).reshape(b, r * k, 1)  # sum over S, (B, RK, 1)
    return w / (total + eps)


def gaussian_weights(
    positions: Tensor,
    mask: Tensor | None,
    grid_h: int,
    grid_w: int,
    sigma: float,
    *,
    patch_centres: bool = True,
    eps: float = 1e-6,
    normalization: str = "eps",
) -> Tensor:
    """Normalized Gaussian weights of every pre-merge patch over the anchors (one grid size).

    positions (B, S, 2) normalized (y, x) in [0, 1]; mask (B, S) bool, False = padding / invalid.
    Returns (B, grid_h * grid_w, S), patches row-major; masked anchors weigh exactly 0 and a row with no
    valid anchor is all zeros. "eps": each row sums to s / (s + eps) with s the raw weight sum, i.e. 1
    wherever an anchor lies within about 3.5 sigma; "softmax": each row with a valid anchor sums to 1;
    "release": the release's two steps, w / (sum over ALL anchors + eps), masked, / (sum + eps) again (in a
    padded batch the padding joins the first sum, as an image's own invalid anchors do: an eps-sized effect).
    patch_centres False: anchors at y * (grid_h - 1), x * (grid_w - 1) against indices (the release).
    """
    pos = positions.float()
    off = 0.5 if patch_centres else 0.0
    py = pos[..., 0] * (grid_h if patch_centres else grid_h - 1)  # (B, S) in patch units
    px = pos[..., 1] * (grid_w if patch_centres else grid_w - 1)
    hh = torch.arange(grid_h, device=pos.device, dtype=torch.float32) + off  # (h,)
    ww = torch.arange(grid_w, device=pos.device, dtype=torch.float32) + off  # (w,)
    ly = -((hh[None, :, None] - py[:, None, :]) ** 2) / (2.0 * sigma * sigma)  # (B, h, S) log-weights
    lx = -((ww[None, :, None] - px[:, None, :]) ** 2) / (2.0 * sigma * sigma)  # (B, w, S)
    keep = None if mask is None else mask.to(torch.bool)  # (B, S)
    return _normalized(ly, lx, keep, normalization, eps)


def resize_weights(weights: Tensor, grid_h: int, grid_w: int, merge: int) -> Tensor:
    """Bilinearly resize per-anchor weight maps from the (h, w) patch grid to the (h/m, w/m) token grid.

    weights (B, h*w, S) -> (B, h/m * w/m, S). Because bilinear resizing is linear, resizing the weights and
    then mixing gamma_i equals mixing first and resizing the gamma field (the release's order), at 1/m^2
    of the cost. align_corners=False: at m = 2 each token gets the mean of its 2 x 2 patches.
    """
    b, _, s = weights.shape
    if merge == 2:  # bilinear at exactly 1/2 = the mean of each 2 x 2 block: two strided adds
        rows = weights.reshape(b, grid_h // 2, 2, grid_w * s)
        pairs = (rows[:, :, 0] + rows[:, :, 1]).reshape(b, grid_h // 2, grid_w // 2, 2, s)
        return ((pairs[:, :, :, 0] + pairs[:, :, :, 1]) * 0.25).reshape(b, -1, s)
    maps = weights.transpose(1, 2).reshape(b * s, 1, grid_h, grid_w)  # (B*S, 1, h, w)
    small = F.interpolate(maps, size=(grid_h // merge, grid_w // merge), mode="bilinear", align_corners=False)
    return small.reshape(b, s, -1).transpose(1, 2)  # (B, h/m * w/m, S)


@dataclass(frozen=True)
class TokenLayout:
    """Where each visual token of a batch sits: host-side ints from image_grid_thw, known before any kernel.

    Every image's merged grid is laid in a (B, Hm, Wm) box (Hm, Wm the batch's largest merged grid);
    `index` picks the N real tokens (each image's frames repeat its field) in the vision module's order,
    or is None when the box is exactly the tokens (all grids equal, one frame each: a reshape suffices).
    """

    heights: tuple[int, ...]  # pre-merge patch rows per image
    widths: tuple[int, ...]  # pre-merge patch columns per image
    merge: int
    box_h: int  # Hm
    box_w: int  # Wm
    n_tokens: int  # N
    index: tuple[int, ...] | None  # (N,) rows of the flattened (B * Hm * Wm) box, or None

    @classmethod
    def from_grids(cls, grids: Sequence[Sequence[int]], merge: int) -> TokenLayout:
        """grids: one (t, h, w) per image, pre-merge patches (image_grid_thw as a list)."""
        ts = [int(g[0]) for g in grids]
        hs = [int(g[1]) for g in grids]
        ws = [int(g[2]) for g in grids]
        bad = [i for i, (h, w) in enumerate(zip(hs, ws, strict=True)) if h % merge or w % merge]
        if bad:
            raise ValueError(
                f"image_grid_thw rows {bad} are not multiples of the merge size {merge}; "
                "resize the images to multiples of patch x merge pixels"
            )
        box_h, box_w = max(hs) // merge, max(ws) // merge
        n = sum(t * (h // merge) * (w // merge) for t, h, w in zip(ts, hs, ws, strict=True))
        if all(t == 1 for t in ts) and len(set(hs)) == 1 and len(set(ws)) == 1:
            return cls(tuple(hs), tuple(ws), merge, box_h, box_w, n, None)
        index: list[int] = []
        for i, (t, h, w) in enumerate(zip(ts, hs, ws, strict=True)):
            one = [(i * box_h + r) * box_w + c for r in range(h // merge) for c in range(w // merge)]
            index += one * t  # the same field on every frame
        return cls(tuple(hs), tuple(ws), merge, box_h, box_w, n, tuple(index))

    def gather(self, box: Tensor) -> Tensor:
        """(B, Hm * Wm, D) values on the box -> (N, D) values of the real tokens, in the vision module's order."""
        flat = box.reshape(-1, box.shape[-1])
        if self.index is None:
            return flat
        return flat.index_select(0, host_values(self.index, box.device, torch.long))


def host_values(values: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
    """Host ints on `device` without a host-device sync: `torch.tensor(values, device=cuda)` copies and then
    waits for the GPU stream to drain (a stall in the middle of the forward, behind the vision tower);
    a non-blocking copy of the small host tensor does not wait (CUDA stages pageable memory at once)."""
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


def _sample_coords(box: int, merge: int, off: float, device: torch.device) -> tuple[Tensor, int]:
    """The pre-merge patch coordinates the bilinear resize reads for each merged row (or column).

    align_corners=False at an exact factor m reads source position m * r + (m - 1) / 2: the mean of two
    patches when m is even, the middle patch when m is odd. Returns (box * k,) float32 coordinates (+ off,
    the patch-centre convention) and k, the patches read per merged row.
    """
    r = torch.arange(box, device=device, dtype=torch.float32)[:, None] * merge  # (box, 1)
    k = 2 if merge % 2 == 0 else 1
    first = merge // 2 - 1 if k == 2 else (merge - 1) // 2  # the first patch read: taps first, first + 1
    taps = torch.arange(k, device=device, dtype=torch.float32) + first  # made on the device: no copy
    return (r + taps[None, :]).reshape(-1) + off, k  # (box * k,)


def token_weights(
    positions: Tensor,
    valid: Tensor,
    layout: TokenLayout,
    sigma: float,
    *,
    patch_centres: bool = True,
    eps: float = 1e-6,
    normalization: str = "eps",
) -> Tensor:
    """Anchor weights of every merged token of a batch, (B, Hm * Wm, S), on the layout's box.

    Equals resize_weights(gaussian_weights(...)) image by image (rows beyond an image's own grid are
    computed and dropped by `TokenLayout.gather`). positions (B, S, 2), valid (B, S) bool.
    """
    pos = positions.float()
    m = layout.merge
    off = 0.5 if patch_centres else 0.0
    hs = host_values(layout.heights, pos.device, torch.float32)  # (B,)
    ws = host_values(layout.widths, pos.device, torch.float32)
    py = pos[..., 0] * (hs if patch_centres else hs - 1)[:, None]  # (B, S) in patch units
    px = pos[..., 1] * (ws if patch_centres else ws - 1)[:, None]
    yy, k = _sample_coords(layout.box_h, m, off, pos.device)  # (Hm * k,)
    xx, _ = _sample_coords(layout.box_w, m, off, pos.device)  # (Wm * k,)
    ly = -((yy[None, :, None] - py[:, None, :]) ** 2) / (2.0 * sigma * sigma)  # (B, Hm k, S)
    lx = -((xx[None, :, None] - px[:, None, :]) ** 2) / (2.0 * sigma * sigma)  # (B, Wm k, S)
    w = _normalized(ly, lx, valid, normalization, eps)  # (B, Hm k * Wm k, S)
    b, s = pos.shape[0], pos.shape[1]
    if k == 1:
        return w
    # the mean of each 2 x 2 block, added in resize_weights' order: rows, then columns, then * 0.25
    rows = w.reshape(b, layout.box_h, 2, layout.box_w * 2 * s)
    pairs = (rows[:, :, 0] + rows[:, :, 1]).reshape(b, layout.box_h, layout.box_w, 2, s)
    return ((pairs[:, :, :, 0] + pairs[:, :, :, 1]) * 0.25).reshape(b, layout.box_h * layout.box_w, s)


def modulate(tokens: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """x * (1 + gamma) + beta computed in float32, cast back to the tokens' dtype; gamma = beta = 0 gives x
    exactly. addcmul promotes the bf16 tokens inside its one kernel: no float32 copy of them is made."""
    return torch.addcmul(beta, tokens, 1.0 + gamma).to(tokens.dtype)


__all__ = [
    "NORMALIZATIONS",
    "TokenLayout",
    "gaussian_weights",
    "modulate",
    "resize_weights",
    "token_weights",
]
