"""model/vision_windows.py: the window attention batched by window length equals transformers' one call
per window, on a batch whose images have full, edge and single windows."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from model.base import visual_module
from model.vision_windows import NAME, use_windows_attention, windows_attention
from tests.model.conftest import fresh_base, make_batch

SIZES = ((476, 392), (140, 84), (84, 56), (56, 56))


def tower_output(visual: Any, batch: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    return visual(pixels, grid_thw=batch["image_grid_thw"]).pooler_output


def test_same_tokens_and_input_gradients(tiny: tuple[Any, Any]) -> None:
    batch = make_batch(tiny[1], sizes=SIZES)
    base = fresh_base()
    visual = visual_module(base)
    pixels = batch["pixel_values"].clone().requires_grad_(True)
    ref = tower_output(visual, batch, pixels)
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), pixels)
    assert use_windows_attention(base) and visual.config._attn_implementation == NAME
    pixels2 = batch["pixel_values"].clone().requires_grad_(True)
    got = tower_output(visual, batch, pixels2)
    (grad,) = torch.autograd.grad(got.square().sum(), pixels2)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_segments_of_three_lengths_interleaved() -> None:
    """Directly: segments 3, 5, 3, 2, 5 (non-contiguous groups) against one SDPA per segment."""
    g = torch.Generator().manual_seed(0)
    cu = torch.tensor([0, 3, 8, 11, 13, 18], dtype=torch.int32)
    q, k, v = (torch.randn(1, 2, 18, 4, generator=g) for _ in range(3))
    module = torch.nn.Module()
    out, _ = windows_attention(module, q, k, v, scaling=0.5, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert out.shape == (1, 18, 2, 4)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        want = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], scale=0.5
        )
        torch.testing.assert_close(out[:, a:b], want.transpose(1, 2), rtol=0, atol=1e-6)


def test_refuses_what_it_cannot_attend() -> None:
    q = torch.zeros(1, 2, 4, 4)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    with pytest.raises(ValueError, match="packed vision sequences"):
        windows_attention(torch.nn.Module(), q, q, q, torch.ones(1, 1, 4, 4), cu_seq_lens_q=cu)
    with pytest.raises(ValueError, match="same segments"):
        windows_attention(torch.nn.Module(), q, q, q, cu_seq_lens_q=cu, cu_seq_lens_k=torch.tensor([0, 2, 4]))


def test_left_alone_where_it_does_not_apply() -> None:
    base = fresh_base()
    visual_module(base).config._attn_implementation = "eager"
    assert not use_windows_attention(base)  # eager (or FlashAttention's own varlen) stays as it is
    assert visual_module(base).config._attn_implementation == "eager"
    assert not use_windows_attention(fresh_base("qwen3_vl"))  # no window attention in Qwen3-VL's tower
