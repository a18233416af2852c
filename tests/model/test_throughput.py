"""Throughput features of the trainer, each against the plain path it replaces: the chunked cross-entropy
(model/fused_ce.py) against torch's on whole logits, with gradients; length-grouped batches
(model/batching.py) against stream order, resumable exactly; the attention choice; the trainer resuming
exactly with both switched on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from model.assemble import attention_implementation, build_model
from model.base import build_tiny_base
from model.batching import LengthGrouped, batches, padding_share
from model.collate import Collator
from model.config import parse_config
from model.data import ShardDataset
from model.fused_ce import chunked_cross_entropy
from model.lora import apply_lora
from model.tlm import TLM, FusarGPT, TLMConfig
from model.train import Runtime, run, train_stage
from tests.model.conftest import fresh_base, make_anchors, make_batch
from tests.model.data_fixtures import write_dataset

CPU = Runtime(torch.device("cpu"))


def _reference_ce(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.T)[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, weight.shape[0]), labels[:, 1:].reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_chunked_ce_equals_torch_with_gradients(chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 9, 8, generator=g, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, requires_grad=True)
    labels = torch.randint(0, 50, (2, 9), generator=g)
    labels[0, :4] = -100
    labels[1, 7:] = -100
    ref = _reference_ce(hidden, weight, labels)
    got = chunked_cross_entropy(hidden, weight, labels, chunk=chunk)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(
        torch.autograd.grad(got * 3.0, [hidden, weight]),
        torch.autograd.grad(ref * 3.0, [hidden, weight]),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunked_ce_in_bf16_and_a_frozen_head() -> None:
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 12, 16, generator=g).to(torch.bfloat16).requires_grad_()
    weight = torch.randn(40, 16, generator=g).to(torch.bfloat16)  # frozen: no gradient asked
    labels = torch.randint(0, 40, (2, 12), generator=g)
    ref = _reference_ce(hidden, weight, labels)
    got = chunked_cross_entropy(hidden, weight, labels, chunk=5)
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
    (gh,) = torch.autograd.grad(got, [hidden])
    (rh,) = torch.autograd.grad(ref, [hidden])
    assert gh.dtype == torch.bfloat16
    torch.testing.assert_close(gh.float(), rh.float(), rtol=2e-2, atol=2e-3)


def test_chunked_ce_without_supervised_tokens_is_a_linked_zero() -> None:
    hidden = torch.randn(1, 4, 8, requires_grad=True)
    loss = chunked_cross_entropy(hidden, torch.randn(10, 8), torch.full((1, 4), -100))
    assert loss.item() == 0.0
    (g,) = torch.autograd.grad(loss, [hidden])
    assert torch.equal(g, torch.zeros_like(hidden))
    with pytest.raises(ValueError, match="chunk >= 1"):
        chunked_cross_entropy(hidden, torch.randn(10, 8), torch.zeros(1, 4, dtype=torch.long), chunk=0)


def test_fusar_gpt_chunked_loss_equals_the_base_loss(tiny: Any) -> None:
    """LoRA + TLM on the tiny VLM: the loss and every trainable gradient as with transformers' loss."""
    _, processor = tiny
    batch = make_batch(processor) | make_anchors((3, 2))
    torch.manual_seed(0)
    model = apply_lora(FusarGPT(fresh_base(), TLM(TLMConfig(), 64)))
    trainable = [p for p in model.parameters() if p.requires_grad]
    ref = model(**batch).loss
    ref_grads = torch.autograd.grad(ref, trainable)
    model.ce_chunk = 7
    got = model(**batch)
    assert got.logits is None
    torch.testing.assert_close(got.loss, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(torch.autograd.grad(got.loss, trainable), ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_attention_is_flash_only_on_cuda_with_the_package() -> None:
    assert attention_implementation(None, torch.device("cpu")) == "sdpa"
    assert attention_implementation("eager", torch.device("cpu")) == "eager"


# ---- length-grouped batches -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("qa"), ["train"] * 12, rows_per_file=6)


def _dataset(root: Path) -> ShardDataset:
    return ShardDataset(root, split="train", stage="qa", image_size=56, shuffle_buffer=8, seed=3)


def _key(s: Any) -> str:
    return f"{s.id}:{s.messages[0]['content']}"


def test_grouped_batches_cover_the_stream_once_with_less_padding(qa_shards: Path) -> None:
    collator = Collator(build_tiny_base(seed=0)[1])
    plain = list(batches(iter(_dataset(qa_shards)), 4))
    grouped = list(LengthGrouped(_dataset(qa_shards), 4, 3, collator.text_length, seed=0))
    assert sorted(_key(s) for b in grouped for s in b) == sorted(_key(s) for b in plain for s in b)
    share = {
        name: padding_share([[collator.text_length(s) for s in b] for b in bs])
        for name, bs in (("plain", plain), ("grouped", grouped))
    }
    assert share["grouped"] < share["plain"], share


def test_grouped_batches_resume_exactly(qa_shards: Path) -> None:
    collator = Collator(build_tiny_base(seed=0)[1])
    full = [[_key(s) for s in b] for b in LengthGrouped(_dataset(qa_shards), 4, 3, collator.text_length)]
    first = LengthGrouped(_dataset(qa_shards), 4, 3, collator.text_length)
    it = iter(first)
    head = [[_key(s) for s in next(it)] for _ in range(5)]  # stops inside the second group
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    again = LengthGrouped(_dataset(qa_shards), 4, 3, collator.text_length)
    again.load_state_dict(state)
    tail = [[_key(s) for s in b] for b in again]
    assert head + tail == full


def test_padding_share_by_hand() -> None:
    assert padding_share([[2, 4], [3]]) == pytest.approx(1 - 9 / 11)
    assert padding_share([]) == 0.0


def test_training_resumes_exactly_with_grouping_and_the_chunked_loss(tmp_path: Path, qa_shards: Path) -> None:
    def cfg(out: Path) -> Any:
        st = {"data": "qa", "train": ["lora", "tlm"], "max_steps": 4, "lr": 1e-3, "batch_size": 2}
        st |= {"save_every": 1, "shuffle_buffer": 8, "eval_split": None}
        raw = {"base": "tiny", "image_size": 56, "max_length": 256, "data": str(qa_shards)}
        raw |= {"output_dir": str(out), "ce_chunk": 16, "group_by_length": 2, "stage1": st}
        return parse_config(raw)

    a = cfg(tmp_path / "a")
    model, processor = build_model(a)
    assert model.ce_chunk == 16
    train_stage(a, "stage1", model, processor, CPU, data=str(qa_shards))
    full = [json.loads(x) for x in (tmp_path / "a" / "stage1" / "metrics.jsonl").read_text().splitlines()]
    torch.manual_seed(99)
    run(cfg(tmp_path / "b"), stages=("stage1",), resume=str(tmp_path / "a" / "stage1" / "checkpoint-000001"))
    resumed = [json.loads(x) for x in (tmp_path / "b" / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [2, 3, 4]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[1:]]
