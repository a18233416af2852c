"""FUSAR-GPT's TLM (token-wise linear modulation) and the FusarGPT wrapper that applies it to a base VLM.

The TLM turns each AlphaEarth anchor vector into a per-channel scale and shift (gamma_i, beta_i), spreads
them over the image with normalized Gaussian weights on the PRE-merge patch grid, resizes the two fields
bilinearly to the merged token grid, and modulates every visual token: x * (1 + gamma) + beta. It acts on
the OUTPUT of the base's vision module (after the patch merger, in LLM width) through a forward hook, so
the modulated tokens are what the LLM sees in training and in generate(). See
/work/shared/reference/fusar-gpt.md for the published maths.

Beyond the release: batches of images of different sizes (each image's grid from image_grid_thw), any
anchor count per image (aef_mask; images without anchors pass through bit for bit), identity
initialisation, float32 maths under bf16 autocast, anchors placed against patch centres
(`TLMConfig.patch_centres`), an optional stable normalization (`TLMConfig.normalization`), Qwen3-VL
(`TLMConfig.modulate_deepstack`), and the weights resized before mixing (same result, 1/4 of the work).

Release mode (`TLMConfig.format = RELEASE_FORMAT`, what a release tlm_config.json says) follows the release's
tlm.py (kklvyyhadr/FUSAR-GPT @ 2079a37) exactly: anchors at y * (hp - 1), x * (wp - 1) against patch indices,
weights normalized over all anchors (+1e-6), masked, normalized again (+1e-6), the MLP in the tokens' dtype
when they are bf16 / fp16 (the release's autocast), gamma / beta rounded to that dtype. Equal within bf16
rounding for square images (the release's only input: its resize is exact for square grids only).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from model.base import hidden_size as base_hidden_size
from model.base import visual_module

# The keys of the release's TLM JSON config, in its order; ours follow.
RELEASE_KEYS = ("sigma", "hidden_mult", "image_size", "vec_dim")
NORMALIZATIONS = ("eps", "softmax", "release")
RELEASE_FORMAT = "tlm_original_train_patch_resize_v1"  # the release's TLMModel.FORMAT


@dataclass
class TLMConfig:
    """The TLM's hyper-parameters; `to_json` writes the release's keys first, then ours.

    patch_centres: anchor positions are normalized image coordinates (0 = top/left EDGE, 1 = bottom/right
    edge), so in patch units an anchor at y lies in patch floor(y * grid_h), whose centre is h + 0.5.
    True compares anchors at y * grid_h with patch centres (h + 0.5, w + 0.5): the field of a centred anchor
    is then symmetric on the grid. False places them as the release does, at y * (grid_h - 1) against patch
    indices h (0 and 1 land on the first and last patch).
    format: None (ours) or RELEASE_FORMAT: the release's maths exactly (patch_centres False, normalization
    "release", the MLP in bf16 when the tokens are); a release JSON (it has the key) loads so.
    """

    sigma: float = 2.0  # Gaussian width, in pre-merge patches
    hidden_mult: int = 4  # MLP hidden width H = max(min_hidden, hidden_mult * C)
    image_size: int = 504  # the square training size of the release (informational: grids come per image)
    vec_dim: int = 64  # AlphaEarth embedding width
    identity_init: bool = False  # zero the last Linear so gamma = beta = 0 at the start
    patch_centres: bool = True
    min_hidden: int = 128
    eps: float = 1e-6  # added to the weight sum before normalizing
    # "eps" (the release): w / (sum w + eps), so a patch farther than about 4 sigma from every anchor gets
    # (almost) no modulation. "softmax": the same weights computed stably (max-subtracted), so every patch
    # sums to exactly 1 and far patches follow their nearest anchors (sparse or partly invalid anchors).
    normalization: str = "eps"
    # Qwen3-VL only: its vision module also returns "deepstack" tokens (merged features of early ViT
    # layers, added to the LLM's first layers at the image positions). False modulates the main visual
    # tokens only, as on Qwen2.5-VL; True applies the same gamma / beta to the deepstack tokens too.
    modulate_deepstack: bool = False
    format: str | None = None

    def __post_init__(self) -> None:
        if self.format not in (None, RELEASE_FORMAT):
            raise ValueError(
                f"TLMConfig.format {self.format!r} is not supported; use {RELEASE_FORMAT!r} (the release) or none"
            )
        if self.release:
            self.patch_centres = False
            self.normalization = "release"
            if self.vec_dim != 64 or self.min_hidden != 128 or self.eps != 1e-6 or self.identity_init:
                raise ValueError(
                    "TLMConfig in release format needs vec_dim 64, min_hidden 128, eps 1e-6 and no identity_init"
                )
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"TLMConfig.sigma must be a positive number of patches, got {self.sigma}")
        if self.hidden_mult < 1 or self.min_hidden < 1 or self.vec_dim < 1:
            raise ValueError("TLMConfig.hidden_mult, min_hidden and vec_dim must be >= 1")
        if self.image_size < 1:
            raise ValueError(f"TLMConfig.image_size must be >= 1, got {self.image_size}")
        if not self.eps > 0:
            raise ValueError(f"TLMConfig.eps must be > 0, got {self.eps}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"TLMConfig.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}"
            )

    @property
    def release(self) -> bool:
        """True when the release's exact maths (and file layout on export) apply."""
        return self.format == RELEASE_FORMAT

    def hidden(self, c: int) -> int:
        """H, the MLP's hidden width for LLM width C (14336 at C = 3584)."""
        return max(self.min_hidden, self.hidden_mult * c)

    def to_json(self) -> dict[str, Any]:
        """The release's {sigma, hidden_mult, image_size, vec_dim} plus our extra keys; in release format
        exactly the release's file: {format, sigma, hidden_mult, image_size, vec_dim}."""
        d = asdict(self)
        if self.release:
            return {"format": self.format} | {k: d[k] for k in RELEASE_KEYS}
        d.pop("format")
        return {k: d[k] for k in RELEASE_KEYS} | {k: v for k, v in d.items() if k not in RELEASE_KEYS}

    @classmethod
    def from_json(cls, d: dict[str, Any] | str) -> TLMConfig:
        """Strict: an unknown key is an error; a release config (no extra keys) reproduces the release."""
        if isinstance(d, str):
            d = json.loads(d)
        assert isinstance(d, dict)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TLM config has unknown keys {unknown}; expected a subset of {sorted(known)}")
        missing = [k for k in RELEASE_KEYS if k not in d]
        if missing:
            raise ValueError(
                f"TLM config lacks the release keys {missing}; write all of {list(RELEASE_KEYS)}"
            )
        d = dict(d)
        if "patch_centres" not in d:  # a release config (with its format key, or an older one without)
            d.setdefault("format", RELEASE_FORMAT)
        return cls(**d)


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
    """Normalized Gaussian weights of every pre-merge patch over the anchors.

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
    b, s = pos.shape[0], pos.shape[1]
    keep = None if mask is None else mask.to(torch.bool)  # (B, S)
    if normalization == "softmax":
        logits = (ly[:, :, None, :] + lx[:, None, :, :]).reshape(b, grid_h * grid_w, s)  # (B, hw, S)
        if keep is not None:
            logits = logits.masked_fill(~keep[:, None, :], float("-inf"))
        return torch.nan_to_num(torch.softmax(logits, dim=-1), nan=0.0)  # no valid anchor: NaN -> 0
    if normalization not in ("eps", "release"):
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    # The Gaussian is separable: exp on (h + w) * S values, one product on h * w * S.
    ey, ex = torch.exp(ly), torch.exp(lx)
    if normalization == "release":
        raw = (ey[:, :, None, :] * ex[:, None, :, :]).reshape(b, grid_h * grid_w, s)  # (B, hw, S)
        w = raw / (raw.sum(-1, keepdim=True) + eps)
        if keep is not None:
            w = w * keep[:, None, :].to(w.dtype)
        return w / (w.sum(-1, keepdim=True) + eps)
    if keep is not None:
        ex = ex * keep[:, None, :].to(ex.dtype)
    w = (ey[:, :, None, :] * ex[:, None, :, :]).reshape(b, grid_h * grid_w, s)  # (B, hw, S)
    total = torch.bmm(ey, ex.transpose(1, 2)).reshape(b, grid_h * grid_w, 1)  # sum over S, (B, hw, 1)
    return w / (total + eps)


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


def modulate(tokens: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """x * (1 + gamma) + beta in float32, cast back to the tokens' dtype; gamma = beta = 0 gives x exactly."""
    return torch.addcmul(beta, tokens.float(), 1.0 + gamma).to(tokens.dtype)


class TLM(nn.Module):
    """The TLM MLP (64 -> H -> 2C, SiLU) and the modulation of a batch's visual tokens."""

    def __init__(self, cfg: TLMConfig, hidden_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_size = hidden_size
        h = cfg.hidden(hidden_size)
        # state-dict keys mlp.0.* / mlp.2.*: the usual nn.Sequential layout (the release's own key names are
        # not in our reference; map them on load if they differ)
        self.mlp = nn.Sequential(nn.Linear(cfg.vec_dim, h), nn.SiLU(), nn.Linear(h, 2 * hidden_size))
        if cfg.identity_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    @property
    def fc1(self) -> nn.Linear:
        """The MLP's first Linear (64 -> H)."""
        return cast(nn.Linear, self.mlp[0])

    @property
    def fc2(self) -> nn.Linear:
        """The MLP's last Linear (H -> 2C): zero it and gamma = beta = 0 (the TLM is the identity)."""
        return cast(nn.Linear, self.mlp[2])

    def anchor_params(self, features: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """(N, 64) anchor vectors -> (N, 2C) [gamma | beta], returned in float32 whatever the weights' dtype.

        In release format with bf16 / fp16 tokens (`dtype`), the MLP runs in that dtype as the release's
        autocast does, and gamma / beta are its rounded values; otherwise it runs in float32."""
        fc1, fc2 = self.fc1, self.fc2
        half = self.cfg.release and dtype in (torch.bfloat16, torch.float16)
        if half:
            assert dtype is not None
            with torch.autocast(device_type=features.device.type, enabled=False):
                x = F.silu(F.linear(features.to(dtype), fc1.weight.to(dtype), fc1.bias.to(dtype)))
                return F.linear(x, fc2.weight.to(dtype), fc2.bias.to(dtype)).float()
        x = features.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.silu(F.linear(x, fc1.weight.float(), fc1.bias.float()))
            return F.linear(x, fc2.weight.float(), fc2.bias.float())

    def forward(
        self,
        tokens: Tensor,
        grid_thw: Tensor,
        features: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        *,
        merge: int = 2,
    ) -> Tensor:
        """Modulate the visual tokens of a batch of images.

        tokens (N, C): the vision module's merged output, all images concatenated, each row-major over its
        (t, h/m, w/m) grid; grid_thw (B, 3) the pre-merge grid of each image; features (B, S, 64),
        positions (B, S, 2), mask (B, S). Images without a valid anchor pass through unchanged.
        """
        fields = self.modulation(
            grid_thw, features, positions, mask, merge=merge, n_tokens=tokens.shape[0], dtype=tokens.dtype
        )
        return tokens if fields is None else modulate(tokens, *fields)

    def modulation(
        self,
        grid_thw: Tensor,
        features: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        *,
        merge: int = 2,
        n_tokens: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor] | None:
        """gamma, beta (N, C) float32 for every visual token of the batch (zeros for unanchored images).

        dtype: the visual tokens' dtype (the release format runs its MLP in it when it is bf16 / fp16).

        None when no image has a valid anchor (the tokens are then left as they are), except while the TLM
        trains: then zero fields linked to its weights, so its gradients are zeros, not missing.
        """
        n_img = grid_thw.shape[0]
        if features.shape[0] != n_img or positions.shape[:2] != features.shape[:2]:
            raise ValueError(
                f"TLM got {n_img} images but aef_features {tuple(features.shape)} / aef_positions "
                f"{tuple(positions.shape)}; pass one row of anchors per image, in image order"
            )
        if features.shape[-1] != self.cfg.vec_dim:
            raise ValueError(
                f"aef_features has width {features.shape[-1]}; the TLM expects {self.cfg.vec_dim}"
            )
        valid = (
            torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
            if mask is None
            else mask.to(device=features.device, dtype=torch.bool)
        )
        grids = [tuple(g) for g in grid_thw.tolist()]
        sizes = [t * (h // merge) * (w // merge) for t, h, w in grids]
        if n_tokens is not None and sum(sizes) != n_tokens:
            raise ValueError(
                f"image_grid_thw implies {sum(sizes)} visual tokens, the vision module gave {n_tokens}"
            )
        anchored = valid.any(1).tolist()
        if not any(anchored):
            if not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())):
                return None
            # Training on a batch without anchors: zero fields that still pass through the MLP (on no
            # rows), so the TLM gets zero gradients instead of none (DDP requires every parameter used).
            link = self.anchor_params(features.new_zeros(0, self.cfg.vec_dim)).sum()  # 0.0, with grad_fn
            zeros = features.new_zeros(sum(sizes), self.hidden_size, dtype=torch.float32) + link
            return zeros, zeros
        b, s = valid.shape
        params = features.new_zeros(b, s, 2 * self.hidden_size, dtype=torch.float32)  # (B, S, 2C)
        params[valid] = self.anchor_params(features[valid], dtype)  # only valid anchors reach the MLP
        per_image = self.token_fields(params, positions, valid, grids, anchored, merge)
        parts = [
            f.repeat(t, 1) if f is not None else params.new_zeros(sizes[i], 2 * self.hidden_size)
            for i, ((t, _, _), f) in enumerate(zip(grids, per_image, strict=True))
        ]
        gamma, beta = torch.cat(parts).chunk(2, dim=-1)  # (N, C) each
        return gamma, beta

    def token_fields(
        self,
        params: Tensor,
        positions: Tensor,
        valid: Tensor,
        grids: list[tuple[int, ...]],
        anchored: list[bool],
        merge: int,
    ) -> list[Tensor | None]:
        """[gamma | beta] on each anchored image's merged token grid, (h/m * w/m, 2C); None if unanchored.

        Images sharing a grid are done together: one Gaussian, one resize, one bmm per grid size.
        params (B, S, 2C) with zero rows at masked anchors (their weights are zero as well).
        """
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (_, h, w) in enumerate(grids):
            if anchored[i]:
                groups.setdefault((h, w), []).append(i)
        out: list[Tensor | None] = [None] * len(grids)
        for (h, w), idx in groups.items():
            ix = torch.tensor(idx, device=params.device)
            with torch.no_grad():  # positions are data: no gradient through the weights
                wts = gaussian_weights(
                    positions[ix],
                    valid[ix],
                    h,
                    w,
                    self.cfg.sigma,
                    patch_centres=self.cfg.patch_centres,
                    eps=self.cfg.eps,
                    normalization=self.cfg.normalization,
                )  # (G, h*w, S)
                wts = resize_weights(wts, h, w, merge)  # (G, h/m * w/m, S)
            fields = torch.bmm(wts, params[ix])  # (G, T, 2C)
            for k, i in enumerate(idx):
                out[i] = fields[k]
        return out


class FusarGPT(nn.Module):
    """A base Qwen VLM whose visual tokens are modulated by a TLM; tlm=None is exactly the base.

    The TLM is applied by a forward hook on the base's vision module, armed only while forward() or
    generate() runs with this batch's anchors, so the LLM sees modulated tokens in training and at the
    prefill of generation. Calling the base's vision module outside forward()/generate() is an error.
    """

    def __init__(self, base: PreTrainedModel, tlm: TLM | None = None) -> None:
        super().__init__()
        self.base: Any = base  # a PreTrainedModel, or a peft PeftModel around it after apply_lora
        self.tlm = tlm
        self._aef: tuple[Tensor, Tensor, Tensor] | None = None
        visual = visual_module(base)
        self.merge = int(getattr(visual, "spatial_merge_size", 2))
        if tlm is not None:
            c = base_hidden_size(base)
            if tlm.hidden_size != c:
                raise ValueError(f"TLM built for width {tlm.hidden_size} but the base LLM has C = {c}")
            visual.register_forward_hook(self._modulate, with_kwargs=True)

    @property
    def config(self) -> Any:
        """The base model's config (what trainers and generate() look up)."""
        return self.base.config

    def _modulate(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        """Forward hook on the vision module: replace its merged tokens by the TLM-modulated ones."""
        if self._aef is None:
            raise RuntimeError(
                "the vision module ran outside FusarGPT.forward/generate; call those with aef_* inputs"
            )
        grid_thw = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if grid_thw is None:
            raise RuntimeError("vision module called without grid_thw; the TLM needs each image's grid")
        feats, pos, mask = self._aef
        assert self.tlm is not None
        pooled = output[1] if isinstance(output, tuple) else output.pooler_output
        fields = self.tlm.modulation(
            grid_thw, feats, pos, mask, merge=self.merge, n_tokens=pooled.shape[0], dtype=pooled.dtype
        )
        if fields is None:
            return output
        if isinstance(output, tuple):
            return (output[0], modulate(output[1], *fields), *output[2:])
        output.pooler_output = modulate(pooled, *fields)
        deepstack = getattr(output, "deepstack_features", None)
        if self.tlm.cfg.modulate_deepstack and deepstack:
            output.deepstack_features = [modulate(d, *fields) for d in deepstack]
        return output

    def _arm(self, features: Tensor | None, positions: Tensor | None, mask: Tensor | None) -> None:
        if self.tlm is None:
            return
        if features is None or positions is None:
            raise ValueError(
                "this FusarGPT has a TLM: pass aef_features and aef_positions "
                "(aef_mask all False for images without anchors)"
            )
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        self._aef = (features, positions, mask)

    def forward(
        self,
        *,
        aef_features: Tensor | None = None,
        aef_positions: Tensor | None = None,
        aef_mask: Tensor | None = None,
        **base_inputs: Any,
    ) -> Any:
        """The base's forward (loss when labels are given), with the TLM applied to the visual tokens.

        aef_features (B, S, 64), aef_positions (B, S, 2) (y, x) in [0, 1], aef_mask (B, S) bool;
        ignored when tlm is None (the baseline sees the same batches).
        """
        self._arm(aef_features, aef_positions, aef_mask)
        try:
            return self.base(**base_inputs)
        finally:
            self._aef = None

    @torch.no_grad()
    def generate(
        self,
        *,
        aef_features: Tensor | None = None,
        aef_positions: Tensor | None = None,
        aef_mask: Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """The base's generate() with the TLM applied at the prefill (where the images are encoded).

        Returns the ids Tensor (B, L), or transformers' GenerateOutput with return_dict_in_generate=True.
        """
        self._arm(aef_features, aef_positions, aef_mask)
        try:
            return self.base.generate(**kwargs)
        finally:
            self._aef = None
