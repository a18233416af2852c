"""The data-dependent index tensors of a batch, computed on the host before the batch is copied (issue #13).

Qwen2.5-VL's forward derives index tensors from `image_grid_thw` and `input_ids`: the vision tower's
rotary positions, window order and sequence boundaries, the LLM's 3D rotary positions. It does so with
`.tolist()`, `.item()` and boolean indexing of the GPU copies, and every one of those waits for the GPU
stream to drain: 158 host-device syncs in a batch-4 step on an H200 (bench/RESULTS.md), each leaving
the GPU idle while the host launches the next kernels. Computed here from the CPU batch with
transformers' own functions and handed to the forward as its precomputed inputs (`position_ids` and
the `image_*` kwargs that `get_image_features` accepts), the step's maths is unchanged
(tests/model/test_host_index.py) and its launches no longer wait.

`image_grid_thw` and the two sequence-boundary tensors stay on the host (`HOST_KEYS`): the vision
attention reads their lengths as Python ints, free from a CPU tensor. Under FSDP (which copies every
input to the device) they still work, with the waits back.

Only Qwen2.5-VL bases (vision tower with window attention) are indexed; other families pass unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from model.base import bare_model, visual_module
from model.fused_ce import supervised_rows

# stay on the host: read as Python ints by the vision tower and the TLM's hook
HOST_KEYS = frozenset({"image_grid_thw", "image_cu_seqlens", "image_cu_window_seqlens"})


def _base(model: Any) -> Any:
    """The transformers model (or peft's wrapper of it) under a FusarGPT and a DDP / FSDP wrapper, if any."""
    while isinstance(getattr(model, "module", None), torch.nn.Module):  # DDP / FSDP
        model = model.module
    return getattr(model, "base", model)


def _language_model(base: Any) -> Any:
    """The Qwen2_5_VLModel under a ForConditionalGeneration (and under peft's wrapper, if any)."""
    bare = bare_model(base)
    return getattr(bare, "model", bare)


def indexable(model: Any) -> bool:
    """Whether host_index knows this model's base: a Qwen2.5-VL vision tower (window attention) and the
    `transformers.vision_utils` helpers that compute its inputs outside the forward."""
    base = _base(model)
    try:
        import transformers.vision_utils  # noqa: F401  (transformers >= 5.x: precomputed vision inputs)
    except ImportError:
        return False
    visual = visual_module(base)
    return hasattr(visual, "fullatt_block_indexes") and hasattr(_language_model(base), "get_rope_index")


def host_index(model: Any, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """`inputs` (a CPU batch from the Collator) plus the index tensors its forward would compute on the
    device. `model`: a FusarGPT (or its base, or a DDP / FSDP wrapper of it). A batch without images or
    without `mm_token_type_ids`, or a model `indexable` rejects, comes back unchanged (a new dict)."""
    from transformers.vision_utils import (
        get_vision_attention_seqlens,
        get_vision_position_ids,
        get_vision_window_index,
    )

    base = _base(model)
    grid = inputs.get("image_grid_thw")
    if grid is None or "mm_token_type_ids" not in inputs or not indexable(base):
        return dict(inputs)
    if grid.device.type != "cpu":
        raise ValueError("host_index expects the CPU batch (call it before copying the batch to the device)")
    visual: Any = visual_module(base)
    merge = int(visual.spatial_merge_size)
    cu, _ = get_vision_attention_seqlens(grid, visual.config)
    cu_window = get_vision_window_index(grid, merge, int(visual.window_size), int(visual.patch_size))
    positions, _ = _language_model(base).get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        image_grid_thw=grid,
        attention_mask=inputs.get("attention_mask"),
    )
    labels = inputs.get("labels")
    return {
        **inputs,
        **({} if labels is None else {"supervised_rows": supervised_rows(labels)}),  # FusarGPT's chunked loss
        "position_ids": positions,  # (3, B, L): the LLM's 3D rotary positions
        "image_position_ids": get_vision_position_ids(grid, merge),
        "image_cu_seqlens": cu,
        "image_max_seqlen": int((cu[1:] - cu[:-1]).max()),
        "image_window_index": cu_window[0],
        "image_cu_window_seqlens": cu_window[1],
        "image_max_window_seqlen": int((cu_window[1][1:] - cu_window[1][:-1]).max()),
    }


def to_device(
    inputs: dict[str, Any], device: torch.device, *, pixel_dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """Copy a batch to `device` (non-blocking), `HOST_KEYS` and plain ints left where they are;
    `pixel_dtype` casts pixel_values (benchmarks feeding a bf16 model without autocast)."""
    out: dict[str, Any] = {}
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor) and k not in HOST_KEYS:
            v = v.to(device, non_blocking=True)
            if pixel_dtype is not None and k == "pixel_values":
                v = v.to(pixel_dtype)
        out[k] = v
    return out


__all__ = ["HOST_KEYS", "host_index", "indexable", "to_device"]
