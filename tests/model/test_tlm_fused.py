"""The batched TLM path (model/tlm_fields.token_weights, one pass per batch) against the pre-rewrite one
(tests/model/tlm_reference.py): same outputs and gradients in float32, same bf16 outputs within one bf16
rounding, for every normalization, both anchor conventions, odd and even merges; and it traces whole under
torch.compile (no host sync, no data-dependent branch)."""

from __future__ import annotations

import pytest
import torch

from model.tlm import TLM, TLMConfig
from model.tlm_fields import TokenLayout, gaussian_weights, resize_weights, token_weights
from tests.model.conftest import make_anchors
from tests.model.tlm_reference import old_forward

C = 16
# 4x6, 6x4, 8x10, 4x6 and 2 frames of 4x6 patches (merge 2), with 3, 1, 0, 2 and 2 anchors
GRID = torch.tensor([[1, 4, 6], [1, 6, 4], [1, 8, 10], [1, 4, 6], [2, 4, 6]])
COUNTS = (3, 1, 0, 2, 2)


def _tlm(**cfg: object) -> TLM:
    torch.manual_seed(0)
    return TLM(TLMConfig(**cfg), C)  # type: ignore[arg-type]


def _n_tokens(grid: torch.Tensor, merge: int) -> int:
    return int(sum(t * (h // merge) * (w // merge) for t, h, w in grid.tolist()))


@pytest.mark.parametrize("normalization", ["eps", "softmax", "release"])
@pytest.mark.parametrize("patch_centres", [True, False])
def test_outputs_and_gradients_equal_the_old_path_in_float32(normalization: str, patch_centres: bool) -> None:
    tlm = _tlm(normalization=normalization, patch_centres=patch_centres)
    a = make_anchors(COUNTS, seed=1)
    tokens = torch.randn(_n_tokens(GRID, 2), C, generator=torch.Generator().manual_seed(2))
    args = (GRID, a["aef_features"], a["aef_positions"], a["aef_mask"])
    new = tlm(tokens, *args)
    old = old_forward(tlm, tokens, *args)
    torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-6)
    assert torch.equal(new[12:32], tokens[12:32])  # the image without anchors: bit for bit
    probe = torch.randn_like(tokens)
    g_new = torch.autograd.grad((new * probe).sum(), list(tlm.parameters()))
    g_old = torch.autograd.grad((old * probe).sum(), list(tlm.parameters()))
    for gn, go in zip(g_new, g_old, strict=True):
        torch.testing.assert_close(gn, go, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("merge", [3, 4])
def test_odd_and_larger_merges_equal_the_bilinear_resize(merge: int) -> None:
    """Merge 3 reads the middle patch, merge 4 the mean of the middle 2 x 2: what F.interpolate does."""
    tlm = _tlm()
    grid = torch.tensor([[1, 2 * merge, 3 * merge], [1, 3 * merge, merge], [2, merge, merge]])
    a = make_anchors((2, 3, 1), seed=3)
    tokens = torch.randn(_n_tokens(grid, merge), C)
    args = (grid, a["aef_features"], a["aef_positions"], a["aef_mask"])
    new = tlm(tokens, *args, merge=merge)
    old = old_forward(tlm, tokens, *args, merge=merge)
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)


def test_token_weights_equal_gaussian_then_resize_per_grid() -> None:
    """Same grid for every image (the training case): the box is the grid, the same additions in order."""
    g = torch.Generator().manual_seed(4)
    pos, mask = torch.rand(3, 7, 2, generator=g), torch.rand(3, 7, generator=g) > 0.3
    layout = TokenLayout.from_grids([(1, 36, 36)] * 3, 2)
    assert layout.index is None  # a reshape, no gather
    for norm in ("eps", "softmax", "release"):
        ref = resize_weights(gaussian_weights(pos, mask, 36, 36, 2.0, normalization=norm), 36, 36, 2)
        torch.testing.assert_close(
            token_weights(pos, mask, layout, 2.0, normalization=norm), ref, rtol=0, atol=1e-7
        )


def test_bf16_tokens_equal_the_old_path_within_one_rounding() -> None:
    for cfg in ({}, {"format": "tlm_original_train_patch_resize_v1"}):
        tlm = _tlm(**cfg)
        a = make_anchors(COUNTS, seed=5)
        tokens = torch.randn(_n_tokens(GRID, 2), C).to(torch.bfloat16)
        args = (GRID, a["aef_features"], a["aef_positions"], a["aef_mask"])
        with torch.no_grad():
            new, old = tlm(tokens, *args), old_forward(tlm, tokens, *args)
        assert new.dtype == torch.bfloat16
        torch.testing.assert_close(new.float(), old.float(), rtol=2**-7, atol=1e-3)  # bf16: 8-bit mantissa
        assert (new != old).float().mean() < 0.01  # almost every value identical


def test_layout_rejects_grids_not_divisible_by_the_merge() -> None:
    with pytest.raises(ValueError, match="not multiples of the merge size 2"):
        TokenLayout.from_grids([(1, 4, 6), (1, 5, 6)], 2)


def test_the_batched_path_traces_whole_under_torch_compile() -> None:
    """fullgraph=True fails on any graph break: a .item() / .tolist(), a boolean index, a branch on data."""
    tlm = _tlm()
    a = make_anchors(COUNTS, seed=6)
    layout = TokenLayout.from_grids(GRID.tolist(), 2)
    eager = tlm.layout_modulation(layout, a["aef_features"], a["aef_positions"], a["aef_mask"])
    torch._dynamo.reset()
    compiled = torch.compile(tlm.layout_modulation, fullgraph=True, backend="aot_eager")
    got = compiled(layout, a["aef_features"], a["aef_positions"], a["aef_mask"])
    for x, y in zip(got, eager, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu_check.sh counts it too)"
)
def test_the_batched_path_makes_no_host_device_sync_on_a_gpu() -> None:
    """A sync in the TLM's forward stalls the step behind the vision tower; CUDA's sync debug mode raises
    on any (mixed grids, so the gather's index is copied too)."""
    tlm = _tlm().cuda()
    a = {k: v.cuda() for k, v in make_anchors(COUNTS, seed=6).items()}
    layout = TokenLayout.from_grids(GRID.tolist(), 2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tlm.layout_modulation(layout, a["aef_features"], a["aef_positions"], a["aef_mask"])
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_batch_with_no_anchor_slots_passes_through() -> None:
    """S = 0 (an image without any anchor row, as predict passes it): tokens unchanged, TLM grads zero."""
    tlm = _tlm()
    tokens = torch.randn(6, C)
    out = tlm(tokens, torch.tensor([[1, 4, 6]]), torch.zeros(1, 0, 64), torch.zeros(1, 0, 2))
    assert torch.equal(out, tokens)
