"""The vision tower's window attention as a few batched SDPA calls instead of one call per window (#13).

Qwen2.5-VL's vision tower attends within windows of 8 x 8 patches in 28 of its 32 blocks. Without
FlashAttention's variable-length kernel, transformers runs one `scaled_dot_product_attention` per window:
a 504 px chip has 25 windows, so a batch of 4 chips launches about 2,800 SDPA calls (and their
transposes) per forward, each a few microseconds of GPU work behind tens of microseconds of launch.

Here windows of equal length are gathered into one batch and attended in one call: a chip's 25 windows
have three lengths (full, edge, corner), so each block makes three calls for the whole batch. The result
is the per-window attention's, to float rounding (tests/model/test_vision_windows.py).

transformers hands the packed sequence and its boundaries (`cu_seq_lens_q`) only to attention functions
whose name says "flash" (`is_flash_attention_requested`), so the function is registered under such a
name; it is SDPA inside. The boundaries are read as Python ints: free when they are CPU tensors (as
model/host_index.py passes them), one host-device sync per call otherwise. Window order is the vision
tower's own (its `window_index`), untouched.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from model.base import visual_module

NAME = "flash_windows_sdpa"  # "flash": transformers passes cu_seq_lens to it (see the module docstring)


@lru_cache(maxsize=16)
def _plan(bounds: tuple[int, ...]) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """(length, starts) for each distinct segment length, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for a, b in itertools.pairwise(bounds):
        if b > a:
            groups.setdefault(b - a, []).append(a)
    return tuple((n, tuple(starts)) for n, starts in groups.items())


@lru_cache(maxsize=64)
def _rows(length: int, starts: tuple[int, ...], device: torch.device) -> Tensor | None:
    """The sequence rows of the segments (starts, each `length` long), or None when they are contiguous."""
    if all(b - a == length for a, b in itertools.pairwise(starts)):
        return None
    rows = [s + i for s in starts for i in range(length)]
    return torch.tensor(rows, dtype=torch.long).to(device, non_blocking=True)


def windows_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None = None,
    *,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: Tensor | None = None,
    cu_seq_lens_k: Tensor | None = None,
    is_causal: bool = False,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """query / key / value (1, heads, T, D) of a packed sequence, segments given by cu_seq_lens_q;
    returns (1, T, heads, D) as transformers' attention functions do."""
    if cu_seq_lens_q is None or query.shape[0] != 1 or attention_mask is not None:
        raise ValueError(f"{NAME} attends packed vision sequences (batch 1, cu_seq_lens_q, no mask) only")
    if cu_seq_lens_k is not None and cu_seq_lens_k is not cu_seq_lens_q:
        if not torch.equal(cu_seq_lens_k.cpu(), cu_seq_lens_q.cpu()):
            raise ValueError(f"{NAME} needs the same segments for queries and keys")
    heads, total = query.shape[1], query.shape[2]
    q, k, v = query[0], key[0], value[0]  # (heads, T, D)
    out = q.new_empty(heads, total, value.shape[-1])
    for length, starts in _plan(tuple(int(x) for x in cu_seq_lens_q.tolist())):
        n = len(starts)
        rows = _rows(length, starts, q.device)
        if rows is None:  # contiguous: a view
            sl = slice(starts[0], starts[0] + n * length)
            parts = [t[:, sl] for t in (q, k, v)]
        else:
            parts = [t.index_select(1, rows) for t in (q, k, v)]
        qg, kg, vg = (t.reshape(heads, n, length, -1).transpose(0, 1) for t in parts)  # (n, heads, len, D)
        res = F.scaled_dot_product_attention(
            qg, kg, vg, dropout_p=dropout if module.training else 0.0, is_causal=is_causal, scale=scaling
        )
        res = res.transpose(0, 1).reshape(heads, n * length, -1)
        if rows is None:
            out[:, sl] = res
        else:
            out.index_copy_(1, rows, res)
    return out.transpose(0, 1).unsqueeze(0).contiguous(), None


def use_windows_attention(model: Any) -> bool:
    """Route a Qwen2.5-VL vision tower's attention through `windows_attention` when it runs transformers'
    SDPA path (FlashAttention's own varlen kernel, or eager, are left as they are); True if it did."""
    from transformers import AttentionInterface

    base = getattr(model, "base", model)
    visual: Any = visual_module(base)
    if not hasattr(visual, "fullatt_block_indexes") or visual.config._attn_implementation != "sdpa":
        return False
    AttentionInterface.register(NAME, windows_attention)
    visual.config._attn_implementation = NAME
    return True


__all__ = ["NAME", "use_windows_attention", "windows_attention"]
