"""The TLM maths (Gaussian alignment, fields, modulation) and FusarGPT's effect on the base VLM."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from model.tlm import TLM, FusarGPT, TLMConfig, gaussian_weights, resize_weights
from tests.model.conftest import fresh_base, make_anchors, make_batch

C = 64  # the tiny base's LLM width


# ---- config -------------------------------------------------------------------------------------------


def test_config_json_has_release_keys_first_and_round_trips() -> None:
    cfg = TLMConfig(sigma=3.0, identity_init=True)
    d = cfg.to_json()
    assert list(d)[:4] == ["sigma", "hidden_mult", "image_size", "vec_dim"]
    assert TLMConfig.from_json(json.dumps(d)) == cfg


def test_release_config_loads_with_release_positions_and_unknown_keys_fail() -> None:
    release = {"sigma": 2.0, "hidden_mult": 4, "image_size": 504, "vec_dim": 64}
    cfg = TLMConfig.from_json(release)
    assert cfg.patch_centres is False and cfg.sigma == 2.0
    with pytest.raises(ValueError, match="unknown keys"):
        TLMConfig.from_json(release | {"sigmaa": 1.0})
    with pytest.raises(ValueError, match="lacks the release keys"):
        TLMConfig.from_json({"sigma": 2.0})
    with pytest.raises(ValueError, match="sigma"):
        TLMConfig(sigma=0.0)


def test_mlp_widths_match_the_release() -> None:
    assert TLMConfig().hidden(16) == 128  # H = max(128, 4C)
    tlm = TLM(TLMConfig(), C)
    assert [tuple(p.shape) for p in tlm.parameters()] == [(256, 64), (256,), (2 * C, 256), (2 * C,)]
    with torch.device("meta"):
        big = TLM(TLMConfig(), 3584)  # the 7B width, no memory allocated
    n = sum(p.numel() for p in big.parameters())
    assert n == 64 * 14336 + 14336 + 14336 * 7168 + 7168
    assert 103e6 < n < 105e6  # "about 104 M parameters"


# ---- Gaussian weights -----------------------------------------------------------------------------------


def test_weights_sum_to_one_over_valid_anchors_and_ignore_masked() -> None:
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(3, 5, 2, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    for norm in ("eps", "softmax"):
        w = gaussian_weights(pos, mask, 6, 8, sigma=2.0, normalization=norm)
        assert w.shape == (3, 48, 5)
        assert torch.all(w[~mask[:, None, :].expand_as(w)] == 0)
        assert torch.all(w[2] == 0)  # an image with no valid anchor gets no weight at all
        # masked anchors do not change the weights of the valid ones, wherever they are
        moved = pos.clone()
        moved[0, 3:] = 0.5
        assert torch.equal(gaussian_weights(moved, mask, 6, 8, 2.0, normalization=norm), w)
    # "eps": rows sum to 1 wherever some valid anchor is near (raw weight >> eps)...
    w = gaussian_weights(pos, mask, 6, 8, sigma=2.0)
    raw = gaussian_weights(pos, mask, 6, 8, sigma=2.0, eps=1e30) * 1e30  # the unnormalized sums
    assert torch.allclose(w.sum(-1), raw.sum(-1) / (raw.sum(-1) + 1e-6), atol=1e-6)
    near = raw.sum(-1) > 0.1
    assert near[:2].float().mean() > 0.9
    assert torch.allclose(w.sum(-1)[near], torch.ones(int(near.sum())), atol=1e-5)
    # ...and fade as s / (s + eps) far from all of them (one anchor, far corner of a big grid)
    far = gaussian_weights(torch.tensor([[[0.0, 0.0]]]), None, 40, 40, 2.0)[0, -1, 0]
    s = math.exp(-(39.5**2 * 2) / 8)
    assert float(far) == pytest.approx(s / (s + 1e-6), abs=1e-12)
    # "softmax": every row with a valid anchor sums to exactly 1, even far away
    w = gaussian_weights(pos, mask, 6, 8, sigma=2.0, normalization="softmax")
    assert torch.allclose(w.sum(-1)[:2], torch.ones(2, 48), atol=1e-6)
    far = gaussian_weights(torch.tensor([[[0.0, 0.0]]]), None, 40, 40, 2.0, normalization="softmax")
    assert torch.all(far == 1.0)


def test_two_anchor_weights_by_hand() -> None:
    """Grid 4 x 4, sigma 1, anchors at patch-unit (1, 1) and (3, 2); index convention and centres."""
    pos = torch.tensor([[[0.25, 0.25], [0.75, 0.5]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # the release's index convention: y * (4 - 1), so (1/3, 1/3) and (1, 2/3) are patch units (1, 1), (3, 2)
    pos_idx = torch.tensor([[[1 / 3, 1 / 3], [1.0, 2 / 3]]])
    w_idx = gaussian_weights(pos_idx, mask, 4, 4, 1.0, patch_centres=False, eps=0.0)
    w_ctr = gaussian_weights(pos, mask, 4, 4, 1.0, patch_centres=True, eps=0.0)
    # index convention, patch (h=1, w=1): distances^2 0 and (2^2 + 1^2) = 5
    a, b = 1.0, math.exp(-5 / 2)
    assert w_idx[0, 1 * 4 + 1].tolist() == pytest.approx([a / (a + b), b / (a + b)], rel=1e-6)
    # index convention, patch (h=3, w=0): distances^2 (2^2 + 1^2) = 5 and (0 + 2^2) = 4
    a, b = math.exp(-5 / 2), math.exp(-4 / 2)
    assert w_idx[0, 3 * 4 + 0].tolist() == pytest.approx([a / (a + b), b / (a + b)], rel=1e-6)
    # centre convention, patch (h=0, w=0) sits at (0.5, 0.5): distances^2 0.5 and (2.5^2 + 1.5^2) = 8.5
    a, b = math.exp(-0.5 / 2), math.exp(-8.5 / 2)
    assert w_ctr[0, 0].tolist() == pytest.approx([a / (a + b), b / (a + b)], rel=1e-6)


def test_centred_anchor_gives_a_symmetric_field_in_both_conventions() -> None:
    """Centres compare y * h with h + 0.5, the release y * (h - 1) with h: both put 0.5 in the middle
    (the old index convention, y * h against h, put it half a patch down-right)."""
    pos = torch.tensor([[[0.5, 0.2], [0.5, 0.8]]])  # mirror images of each other about the middle
    for centres in (True, False):
        for norm in ("eps", "release"):
            w = gaussian_weights(pos, None, 6, 6, 1.0, patch_centres=centres, normalization=norm)
            left, right = w[0, :, 0].reshape(6, 6), w[0, :, 1].reshape(6, 6)
            assert torch.allclose(left, right.flip(1), atol=1e-6)  # mirrored anchors, mirrored fields
            assert torch.allclose(left, left.flip(0), atol=1e-6)  # y = 0.5 lies on the middle row line


def test_resizing_weights_equals_resizing_the_fields() -> None:
    """Our order (resize weights, then mix) equals the release's (mix, then resize the gamma/beta fields)."""
    g = torch.Generator().manual_seed(1)
    pos, params = torch.rand(1, 7, 2, generator=g), torch.randn(7, 2 * C, generator=g)
    w = gaussian_weights(pos, None, 6, 10, 2.0)  # (1, 60, 7)
    fields = (w[0] @ params).T.reshape(1, 2 * C, 6, 10)  # the release: fields on the patch grid
    ref = F.interpolate(fields, size=(3, 5), mode="bilinear", align_corners=False).reshape(2 * C, 15).T
    ours = resize_weights(w, 6, 10, 2)[0] @ params
    assert torch.allclose(ours, ref, atol=1e-5)
    # other merge sizes take the general path: compare it with the fields' bilinear resize as well
    w3 = gaussian_weights(pos, None, 6, 9, 2.0)
    fields3 = (w3[0] @ params).T.reshape(1, 2 * C, 6, 9)
    ref3 = F.interpolate(fields3, size=(2, 3), mode="bilinear", align_corners=False).reshape(2 * C, 6).T
    assert torch.allclose(resize_weights(w3, 6, 9, 3)[0] @ params, ref3, atol=1e-5)


# ---- TLM forward ------------------------------------------------------------------------------------------


def reference_modulation(
    tlm: TLM, tokens: torch.Tensor, grid_thw: torch.Tensor, anchors: dict
) -> torch.Tensor:
    """The published recipe, image by image: fields on the patch grid, resize, x * (1 + gamma) + beta."""
    out, start = [], 0
    for i, (t, h, w) in enumerate(grid_thw.tolist()):
        n = h * w // 4
        x = tokens[start : start + t * n]
        start += t * n
        keep = anchors["aef_mask"][i]
        if not keep.any():
            out.append(x)
            continue
        params = tlm.mlp(anchors["aef_features"][i][keep])  # (S, 2C)
        weights = gaussian_weights(anchors["aef_positions"][i][keep][None], None, h, w, tlm.cfg.sigma)[0]
        fields = (weights @ params).T.reshape(1, 2 * C, h, w)
        fields = F.interpolate(fields, size=(h // 2, w // 2), mode="bilinear", align_corners=False)
        gamma, beta = fields.reshape(2 * C, n).T.chunk(2, -1)
        out.append((x.reshape(t, n, C) * (1 + gamma) + beta).reshape(t * n, C))  # same field every frame
    return torch.cat(out)


def test_tlm_matches_the_reference_for_a_mixed_batch() -> None:
    """5 images: 4x6, 6x4, 8x10, 4x6 and 2 frames of 4x6 patches, with 3, 1, 0, 2 and 2 anchors."""
    torch.manual_seed(0)
    tlm = TLM(TLMConfig(), C)
    grid = torch.tensor([[1, 4, 6], [1, 6, 4], [1, 8, 10], [1, 4, 6], [2, 4, 6]])
    tokens = torch.randn(6 + 6 + 20 + 6 + 12, C)
    anchors = make_anchors((3, 1, 0, 2, 2))
    with torch.no_grad():
        out = tlm(tokens, grid, anchors["aef_features"], anchors["aef_positions"], anchors["aef_mask"])
        ref = reference_modulation(tlm, tokens, grid, anchors)
    assert out.shape == tokens.shape
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.equal(out[12:32], tokens[12:32])  # no anchors: passed through bit for bit
    assert not torch.allclose(out[:12], tokens[:12])
    assert not torch.allclose(out[32:], tokens[32:])


def test_tlm_keeps_token_dtype_and_computes_in_float32() -> None:
    torch.manual_seed(0)
    tlm = TLM(TLMConfig(), C).to(torch.bfloat16)
    grid = torch.tensor([[1, 4, 6]])
    tokens = torch.randn(6, C, dtype=torch.bfloat16)
    a = make_anchors((2,))
    assert tlm.anchor_params(a["aef_features"][0]).dtype == torch.float32
    out = tlm(tokens, grid, a["aef_features"], a["aef_positions"], a["aef_mask"])
    assert out.dtype == torch.bfloat16
    ref = reference_modulation(tlm.float(), tokens.float(), grid, a)
    assert torch.allclose(out.float(), ref, atol=0.05, rtol=0.02)


def test_mlp_stays_float32_under_bf16_autocast() -> None:
    tlm = TLM(TLMConfig(), C)
    a = make_anchors((2,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = tlm.anchor_params(a["aef_features"][0])
    assert params.dtype == torch.float32
    assert torch.allclose(params, tlm.mlp(a["aef_features"][0]), atol=1e-6)


def test_bf16_base_with_float32_tlm(tiny: Any) -> None:
    """The real setting: base in bf16, TLM in float32; identity TLM still gives the bf16 base exactly."""
    _, processor = tiny
    batch = make_batch(processor)
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    ref = _logits(fresh_base().to(torch.bfloat16), batch)
    a = make_anchors((3, 1))
    identity = FusarGPT(fresh_base().to(torch.bfloat16), TLM(TLMConfig(identity_init=True), C))
    assert identity.tlm is not None and identity.tlm.fc1.weight.dtype == torch.float32
    out = _logits(identity, batch, a)
    assert out.dtype == ref.dtype == torch.bfloat16 and torch.equal(out, ref)
    torch.manual_seed(0)
    live = FusarGPT(fresh_base().to(torch.bfloat16), TLM(TLMConfig(), C))
    assert not torch.equal(_logits(live, batch, a), ref)


def test_tlm_rejects_anchor_rows_that_do_not_match_the_images() -> None:
    tlm = TLM(TLMConfig(), C)
    a = make_anchors((2, 2))
    with pytest.raises(ValueError, match="one row of anchors per image"):
        tlm(
            torch.randn(6, C), torch.tensor([[1, 4, 6]]), a["aef_features"], a["aef_positions"], a["aef_mask"]
        )


# ---- FusarGPT on the tiny base --------------------------------------------------------------------------


def _logits(model: Any, batch: dict, anchors: dict | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch, **(anchors or {})).logits


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_identity_tlm_gives_the_base_logits(family: str, tiny: Any, tiny3: Any) -> None:
    base, processor = tiny if family == "qwen2_5_vl" else tiny3
    batch = make_batch(processor)
    anchors = make_anchors((3, 1))
    ref = _logits(base, batch)
    identity = FusarGPT(fresh_base(family), TLM(TLMConfig(identity_init=True), C))
    assert torch.equal(_logits(identity, batch, anchors), ref)
    zeroed = TLM(TLMConfig(), C)
    with torch.no_grad():
        zeroed.fc2.weight.zero_()
        zeroed.fc2.bias.zero_()
    assert torch.equal(_logits(FusarGPT(fresh_base(family), zeroed), batch, anchors), ref)


def test_deepstack_modulation_is_a_qwen3_option(tiny3: Any) -> None:
    base, processor = tiny3
    batch = make_batch(processor)
    a = make_anchors((3, 1))
    outs = {}
    for flag in (False, True):
        torch.manual_seed(0)
        model = FusarGPT(fresh_base("qwen3_vl"), TLM(TLMConfig(modulate_deepstack=flag), C))
        outs[flag] = _logits(model, batch, a)
    assert not torch.allclose(outs[True], outs[False], atol=1e-5)
    identity = FusarGPT(
        fresh_base("qwen3_vl"), TLM(TLMConfig(identity_init=True, modulate_deepstack=True), C)
    )
    assert torch.equal(_logits(identity, batch, a), _logits(base, batch))


def test_no_tlm_is_exactly_the_base(tiny: Any, batch: dict) -> None:
    base, _ = tiny
    model = FusarGPT(fresh_base(), None)
    anchors = make_anchors((3, 1))
    out = model(**batch, **anchors)
    ref = base(**batch)
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.loss, ref.loss)
    assert list(model.state_dict()) == ["base." + k for k in base.state_dict()]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_modulation_reaches_the_llm_and_unanchored_images_pass_through(
    family: str, tiny: Any, tiny3: Any
) -> None:
    base, processor = tiny if family == "qwen2_5_vl" else tiny3
    batch = make_batch(processor)
    torch.manual_seed(0)
    model = FusarGPT(fresh_base(family), TLM(TLMConfig(), C))
    a = make_anchors((3, 1))
    out = _logits(model, batch, a)
    ref = _logits(base, batch)
    assert not torch.allclose(out, ref, atol=1e-4)
    b = {k: v.clone() for k, v in a.items()}
    b["aef_features"][0, 0] += 1.0  # change one anchor of image 0
    changed = _logits(model, batch, b)
    assert not torch.allclose(changed[0], out[0], atol=1e-5)
    assert torch.equal(changed[1], out[1])  # image 1's tokens did not see image 0's anchors
    none = {**a, "aef_mask": torch.tensor([[True, True, True], [False, False, False]])}
    mixed = _logits(model, batch, none)
    assert torch.equal(mixed[1], ref[1])  # all anchors masked: exactly the base for that sample


def test_gradients_reach_the_tlm_from_the_loss(batch: dict) -> None:
    torch.manual_seed(0)
    model = FusarGPT(fresh_base(), TLM(TLMConfig(identity_init=True), C))
    loss = model(**batch, **make_anchors((3, 1))).loss
    loss.backward()
    assert model.tlm is not None
    assert model.tlm.fc2.weight.grad is not None and model.tlm.fc2.weight.grad.abs().sum() > 0


def test_a_batch_without_anchors_still_gives_the_tlm_zero_gradients(tiny: Any, batch: dict) -> None:
    """DDP needs every trained parameter in the graph: no anchors -> zero gradients, base logits."""
    base, _ = tiny
    torch.manual_seed(0)
    model = FusarGPT(fresh_base(), TLM(TLMConfig(), C))
    none = {**make_anchors((3, 1)), "aef_mask": torch.zeros(2, 3, dtype=torch.bool)}
    out = model(**batch, **none)
    assert torch.equal(out.logits, base(**batch).logits)
    out.loss.backward()
    assert model.tlm is not None
    grads = [p.grad for p in model.tlm.parameters()]
    assert all(g is not None and torch.all(g == 0) for g in grads)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_generate_runs_with_the_tlm_and_uses_it_at_prefill(family: str, tiny: Any, tiny3: Any) -> None:
    _, processor = tiny if family == "qwen2_5_vl" else tiny3
    processor.tokenizer.padding_side = "left"
    try:
        batch = make_batch(processor)
    finally:
        processor.tokenizer.padding_side = "right"
    batch.pop("labels")
    torch.manual_seed(0)
    model = FusarGPT(fresh_base(family), TLM(TLMConfig(), C))
    a = make_anchors((3, 1))
    gen = model.generate(
        **batch, **a, max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True
    )
    assert gen.sequences.shape == (2, batch["input_ids"].shape[1] + 4)
    first = _logits(model, batch, a)[:, -1]  # the prompt's last position, modulated
    assert torch.allclose(gen.scores[0], first, atol=1e-4)
    plain = _logits(fresh_base(family), batch)[:, -1]
    assert not torch.allclose(gen.scores[0], plain, atol=1e-4)


def test_missing_anchors_and_bare_vision_calls_are_errors(batch: dict) -> None:
    model = FusarGPT(fresh_base(), TLM(TLMConfig(), C))
    with pytest.raises(ValueError, match="aef_features"):
        model(**batch)
    with pytest.raises(RuntimeError, match="outside FusarGPT"):
        model.base(**batch)
    with pytest.raises(ValueError, match="width"):
        FusarGPT(fresh_base(), TLM(TLMConfig(), 32))
