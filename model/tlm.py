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

import contextlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from model.base import bare_model, visual_module
from model.base import hidden_size as base_hidden_size
from model.tlm_fields import (
    NORMALIZATIONS,
    TokenLayout,
    gaussian_weights,
    modulate,
    resize_weights,
    token_weights,
)

# The keys of the release's TLM JSON config, in its order; ours follow.
RELEASE_KEYS = ("sigma", "hidden_mult", "image_size", "vec_dim")
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


def _no_autocast(x: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Autocast off on x's device (a meta tensor, which has no autocast, needs nothing: the tests trace the
    step there to prove it reads no device value on the host)."""
    if x.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, enabled=False)


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
            with _no_autocast(features):
                x = F.silu(F.linear(features.to(dtype), fc1.weight.to(dtype), fc1.bias.to(dtype)))
                return F.linear(x, fc2.weight.to(dtype), fc2.bias.to(dtype)).float()
        x = features.float()
        with _no_autocast(x):
            x = F.silu(F.linear(x, fc1.weight.float(), fc1.bias.float()))
            return F.linear(x, fc2.weight.float(), fc2.bias.float())

    def forward(
        self,
        tokens: Tensor,
        grid_thw: Tensor | list[tuple[int, int, int]],
        features: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        *,
        merge: int = 2,
    ) -> Tensor:
        """Modulate the visual tokens of a batch of images.

        tokens (N, C): the vision module's merged output, all images concatenated, each row-major over its
        (t, h/m, w/m) grid; grid_thw (B, 3) the pre-merge grid of each image (a host list avoids a sync);
        features (B, S, 64), positions (B, S, 2), mask (B, S). Images without a valid anchor get
        gamma = beta = 0, so they come out bit for bit as they went in.
        """
        gamma, beta = self.modulation(
            grid_thw, features, positions, mask, merge=merge, n_tokens=tokens.shape[0], dtype=tokens.dtype
        )
        return modulate(tokens, gamma, beta)

    def modulation(
        self,
        grid_thw: Tensor | list[tuple[int, int, int]],
        features: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        *,
        merge: int = 2,
        n_tokens: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        """gamma, beta (N, C) float32 for every visual token of the batch (zeros for unanchored images).

        dtype: the visual tokens' dtype (the release format runs its MLP in it when it is bf16 / fp16).
        One path for every batch, with shapes fixed on the host by the grids: no host-device sync, no
        boolean indexing, no branch on the anchors' values (torch.compile traces it whole). Every anchor
        row goes through the MLP (invalid ones with zeroed features; their weights are exactly 0), so a
        batch without anchors still gives the TLM zero gradients, as DDP requires.
        """
        grids = grid_thw.tolist() if isinstance(grid_thw, Tensor) else grid_thw
        layout = TokenLayout.from_grids(grids, merge)
        return self.layout_modulation(layout, features, positions, mask, n_tokens=n_tokens, dtype=dtype)

    def layout_modulation(
        self,
        layout: TokenLayout,
        features: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        *,
        n_tokens: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`modulation` for a layout already built on the host (the part torch.compile sees)."""
        n_img = len(layout.heights)
        if features.shape[0] != n_img or positions.shape[:2] != features.shape[:2]:
            raise ValueError(
                f"TLM got {n_img} images but aef_features {tuple(features.shape)} / aef_positions "
                f"{tuple(positions.shape)}; pass one row of anchors per image, in image order"
            )
        if features.shape[-1] != self.cfg.vec_dim:
            raise ValueError(
                f"aef_features has width {features.shape[-1]}; the TLM expects {self.cfg.vec_dim}"
            )
        if n_tokens is not None and layout.n_tokens != n_tokens:
            raise ValueError(
                f"image_grid_thw implies {layout.n_tokens} visual tokens, the vision module gave {n_tokens}"
            )
        b, s, d = features.shape
        valid = (
            torch.ones((b, s), dtype=torch.bool, device=features.device)
            if mask is None
            else mask.to(device=features.device, dtype=torch.bool)
        )
        feats = torch.where(valid[..., None], features, 0.0)  # invalid anchors: finite zeros, weight 0
        params = self.anchor_params(feats.reshape(b * s, d), dtype).reshape(
            b, s, 2 * self.hidden_size
        )  # (B, S, 2C)
        with torch.no_grad():  # positions are data: no gradient through the weights
            wts = token_weights(
                positions,
                valid,
                layout,
                self.cfg.sigma,
                patch_centres=self.cfg.patch_centres,
                eps=self.cfg.eps,
                normalization=self.cfg.normalization,
            )  # (B, Hm * Wm, S)
        fields = layout.gather(torch.bmm(wts, params))  # (N, 2C)
        gamma, beta = fields.chunk(2, dim=-1)  # (N, C) each
        return gamma, beta


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
        self._grids: list[tuple[int, int, int]] | None = None  # this call's image_grid_thw, on the host
        self.bypass_tlm = False  # benchmarks: skip the TLM's work entirely (the step minus the TLM)
        self.ce_chunk = 0  # > 0: the loss by model/fused_ce.py in chunks of this many tokens, no whole logits
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
        if self.bypass_tlm:
            return output
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
        grids = self._grids if self._grids is not None else grid_thw.tolist()
        gamma, beta = self.tlm.modulation(
            grids, feats, pos, mask, merge=self.merge, n_tokens=pooled.shape[0], dtype=pooled.dtype
        )
        if isinstance(output, tuple):
            return (output[0], modulate(output[1], gamma, beta), *output[2:])
        output.pooler_output = modulate(pooled, gamma, beta)
        deepstack = getattr(output, "deepstack_features", None)
        if self.tlm.cfg.modulate_deepstack and deepstack:
            output.deepstack_features = [modulate(d, gamma, beta) for d in deepstack]
        return output

    def _arm(
        self,
        features: Tensor | None,
        positions: Tensor | None,
        mask: Tensor | None,
        grid_thw: Tensor | None = None,
    ) -> None:
        """Hold this call's anchors for the hook; the grids go to the host now, at the start of the step,
        where reading them costs no stall (the hook would otherwise wait for the vision tower)."""
        if self.tlm is None or self.bypass_tlm:
            return
        if features is None or positions is None:
            raise ValueError(
                "this FusarGPT has a TLM: pass aef_features and aef_positions "
                "(aef_mask all False for images without anchors)"
            )
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        self._aef = (features, positions, mask)
        self._grids = None if grid_thw is None else [tuple(g) for g in grid_thw.tolist()]

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
        rows = base_inputs.pop(
            "supervised_rows", None
        )  # model/host_index.py: the loss's rows, made on the host
        self._arm(aef_features, aef_positions, aef_mask, base_inputs.get("image_grid_thw"))
        try:
            if self.ce_chunk and base_inputs.get("labels") is not None:
                return self._chunked_loss(base_inputs, rows)
            return self.base(**base_inputs)
        finally:
            self._aef = self._grids = None

    def _chunked_loss(self, inputs: dict[str, Any], rows: Tensor | None = None) -> Any:
        """The base's decoder (LoRA layers included: peft injects them in place) up to its final hidden
        states, then the loss from them and the lm_head weight in chunks; `logits` is None."""
        from transformers.modeling_outputs import CausalLMOutputWithPast

        from model.fused_ce import chunked_cross_entropy

        inputs = dict(inputs)
        labels = inputs.pop("labels")
        lm = bare_model(self.base)
        hidden = lm.model(**inputs, use_cache=False).last_hidden_state  # (B, L, D)
        loss = chunked_cross_entropy(hidden, lm.lm_head.weight, labels, chunk=self.ce_chunk, rows=rows)
        return CausalLMOutputWithPast(loss=loss, logits=None)

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
        self._arm(aef_features, aef_positions, aef_mask, kwargs.get("image_grid_thw"))
        try:
            return self.base.generate(**kwargs)
        finally:
            self._aef = self._grids = None


# gaussian_weights, resize_weights and modulate live in model/tlm_fields.py; re-exported for callers here
__all__ = [
    "NORMALIZATIONS",
    "RELEASE_FORMAT",
    "TLM",
    "FusarGPT",
    "TLMConfig",
    "gaussian_weights",
    "modulate",
    "resize_weights",
]
