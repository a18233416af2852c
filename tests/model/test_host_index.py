"""model/host_index.py: the batch's index tensors made on the host give the same step, and the step then
reads no device value on the host beyond the two checks transformers itself makes.

The second is shown on the meta device, where a tensor has a shape and no values: a forward and backward
that run there never read a value back. Any `.item()` / `.tolist()` / `nonzero` of a device tensor would
be a host-device sync on a GPU; here each is recorded with the line that made it.
"""

from __future__ import annotations

import traceback
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model.base import hidden_size
from model.host_index import HOST_KEYS, host_index, indexable, to_device
from model.lora import apply_lora
from model.tlm import TLM, FusarGPT, TLMConfig
from model.vision_windows import use_windows_attention
from tests.model.conftest import fresh_base, make_anchors, make_batch

# full windows, edge windows and a one-window image (the tiny tower's windows are 2 x 2 merged tokens)
SIZES = ((476, 392), (140, 84), (84, 56))
READS = (
    torch.ops.aten._local_scalar_dense.default,  # .item(), bool(t), .tolist() element by element
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
)


def fusar(windows: bool = False) -> FusarGPT:
    base = fresh_base()
    model = apply_lora(FusarGPT(base, TLM(TLMConfig(), hidden_size(base))))
    model.ce_chunk = 7  # the trainer's chunked loss, several chunks
    if windows:
        assert use_windows_attention(model)
    return model


def step(model: FusarGPT, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = model(**inputs).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.fixture(scope="module")
def cpu_batch(tiny: tuple[Any, Any]) -> dict[str, torch.Tensor]:
    return make_batch(tiny[1], sizes=SIZES) | make_anchors((16, 9, 0))


def test_same_loss_and_gradients(cpu_batch: dict[str, torch.Tensor]) -> None:
    """The trainer's step (host index + batched windows) against transformers' own path, LoRA and TLM."""
    torch.manual_seed(0)
    ref_loss, ref_grads = step(fusar(), cpu_batch)
    torch.manual_seed(0)
    model = fusar(windows=True)
    loss, grads = step(model, host_index(model, cpu_batch))
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and any(".tlm." in n or n.startswith("tlm.") for n in grads)
    for n, g in grads.items():
        torch.testing.assert_close(g, ref_grads[n], rtol=0, atol=1e-6, msg=n)


def test_index_is_what_the_forward_computes(cpu_batch: dict[str, torch.Tensor]) -> None:
    model = fusar()
    got = host_index(model, cpu_batch)
    lm = model.base.get_base_model().model
    positions, _ = lm.get_rope_index(
        cpu_batch["input_ids"],
        cpu_batch["mm_token_type_ids"],
        image_grid_thw=cpu_batch["image_grid_thw"],
        attention_mask=cpu_batch["attention_mask"],
    )
    assert torch.equal(got["position_ids"], positions)
    grid = cpu_batch["image_grid_thw"].tolist()
    assert got["image_cu_seqlens"].tolist() == [
        0,
        *torch.tensor([h * w for _, h, w in grid]).cumsum(0).tolist(),
    ]
    assert got["image_max_seqlen"] == max(h * w for _, h, w in grid)
    assert sorted(got["image_window_index"].tolist()) == list(range(sum(h * w for _, h, w in grid) // 4))
    shifted = cpu_batch["labels"][:, 1:].reshape(-1)
    assert got["supervised_rows"].tolist() == [i for i, v in enumerate(shifted.tolist()) if v != -100]
    assert all(torch.equal(got[k], v) for k, v in cpu_batch.items())  # the batch itself is untouched


class HostReads(TorchDispatchMode):
    """Records every op that reads a tensor's values back to the host, with the line that called it;
    `.item()` answers True (a check passes), the others run as they are."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in READS:
            frames = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
            self.sites.append(f"{func.__name__} {frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].name}")
            if func is torch.ops.aten._local_scalar_dense.default:
                return True
        return func(*args, **(kwargs or {}))


def test_step_reads_back_only_transformers_two_checks(cpu_batch: dict[str, torch.Tensor]) -> None:
    model = fusar(windows=True)
    inputs = host_index(model, cpu_batch)
    meta = torch.device("meta")
    model.to(meta)
    with HostReads() as reads:
        loss = model(**to_device(inputs, meta)).loss
        loss.backward()
    assert loss.device == meta
    # the placeholder-count check of Qwen2.5-VL's get_placeholder_mask, and the causal mask's "is there any
    # padding?" (masking_utils): one wait each per forward, of the 158 a batch-4 H200 step made before
    assert sorted(reads.sites) == [
        "_local_scalar_dense.default import_utils.py:torch_compilable_check",
        "_local_scalar_dense.default masking_utils.py:_ignore_causal_mask_sdpa",
    ]


def test_without_the_index_the_step_reads_device_values(cpu_batch: dict[str, torch.Tensor]) -> None:
    """The check above can fail: transformers' own path, given device tensors, reads them back."""
    model = fusar()
    model.to(torch.device("meta"))
    with pytest.raises((RuntimeError, NotImplementedError), match="meta"):
        model(**to_device(cpu_batch, torch.device("meta")))


def test_to_device_leaves_host_keys_and_ints() -> None:
    batch = {
        "input_ids": torch.zeros(1, 3, dtype=torch.long),
        "pixel_values": torch.zeros(4, 2),
        "image_grid_thw": torch.tensor([[1, 2, 2]]),
        "image_cu_seqlens": torch.tensor([0, 4], dtype=torch.int32),
        "image_cu_window_seqlens": torch.tensor([0, 4], dtype=torch.int32),
        "image_max_seqlen": 4,
    }
    out = to_device(batch, torch.device("meta"), pixel_dtype=torch.bfloat16)
    assert {k for k, v in out.items() if isinstance(v, torch.Tensor) and v.device.type == "cpu"} == HOST_KEYS
    assert out["input_ids"].device.type == "meta" and out["pixel_values"].dtype == torch.bfloat16
    assert out["image_max_seqlen"] == 4


def test_unindexed_cases(tiny3: tuple[Any, Any], cpu_batch: dict[str, torch.Tensor]) -> None:
    assert not indexable(tiny3[0])  # Qwen3-VL: no window attention, its batches pass unchanged
    batch3 = make_batch(tiny3[1])
    assert host_index(tiny3[0], batch3).keys() == batch3.keys()
    model = fusar()
    text_only = {k: v for k, v in cpu_batch.items() if k not in ("pixel_values", "image_grid_thw")}
    assert host_index(model, text_only).keys() == text_only.keys()
    with pytest.raises(ValueError, match="CPU batch"):
        host_index(model, {**cpu_batch, "image_grid_thw": cpu_batch["image_grid_thw"].to("meta")})
