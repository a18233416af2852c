"""Fixtures for the trainer's model tests: a tiny Qwen VLM built in code and small real batches.

Session-scoped where the object is never mutated (processor, reference base); a test that wraps a base
in FusarGPT or LoRA (which adds hooks / replaces modules) builds its own with `fresh_base`, which is
cheap (well under a second) and seeded, so it has the same weights as the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from model.base import build_tiny_base

# (height, width) of the two test images: non-square, different grids (4 x 6 and 6 x 4 patches).
IMAGE_SIZES = ((56, 84), (84, 56))


def fresh_base(family: str = "qwen2_5_vl") -> Any:
    """A new tiny base (seed 0: identical weights on every call)."""
    model, _ = build_tiny_base(family, seed=0)
    return model


def make_batch(processor: Any, *, seed: int = 0, sizes: tuple[tuple[int, int], ...] = IMAGE_SIZES) -> dict:
    """A processor batch of len(sizes) image + question + answer chats, labels on the input ids."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    chats = [
        [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": f"How many ships? {i}"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": str(3 + i)}]},
        ]
        for i in range(len(sizes))
    ]
    texts = [processor.apply_chat_template(c, tokenize=False) for c in chats]
    batch = dict(processor(text=texts, images=images, return_tensors="pt", padding=True))
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return batch


def make_anchors(counts: tuple[int, ...], *, seed: int = 0, dim: int = 64) -> dict[str, torch.Tensor]:
    """aef_* tensors for images with `counts` valid anchors each, padded to the largest count."""
    g = torch.Generator().manual_seed(seed)
    s = max(max(counts), 1)
    feats = torch.randn(len(counts), s, dim, generator=g)
    pos = torch.rand(len(counts), s, 2, generator=g)
    mask = torch.arange(s)[None, :] < torch.tensor(counts)[:, None]
    return {"aef_features": feats * mask[..., None], "aef_positions": pos, "aef_mask": mask}


@pytest.fixture(scope="session")
def tiny() -> tuple[Any, Any]:
    """(reference bare base, processor) of the qwen2_5_vl family; do not wrap or train the base."""
    return build_tiny_base("qwen2_5_vl", seed=0)


@pytest.fixture(scope="session")
def tiny3() -> tuple[Any, Any]:
    """(reference bare base, processor) of the qwen3_vl family; do not wrap or train the base."""
    return build_tiny_base("qwen3_vl", seed=0)


@pytest.fixture(scope="session")
def batch(tiny: tuple[Any, Any]) -> dict:
    return make_batch(tiny[1])
