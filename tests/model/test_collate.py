"""The collator: labels on the assistant tokens only, truncation that never cuts the image, padded anchors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from model.collate import IGNORE_INDEX, Collator, pad_anchors, reference_answer
from model.data import Sample


def sample(
    answer: str = "3",
    *,
    question: str = "How many ships?",
    s: int = 4,
    invalid: tuple[int, ...] = (),
    size: tuple[int, int] = (56, 56),
    extra_turns: list[dict[str, str]] | None = None,
    seed: int = 0,
) -> Sample:
    rng = np.random.default_rng(seed)
    valid = np.ones(s, bool)
    valid[list(invalid)] = False
    feats = rng.normal(size=(s, 64)).astype(np.float32) * valid[:, None]
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return Sample(
        id=f"chip{seed}",
        image=Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)),
        features=feats,
        positions=rng.random((s, 2)).astype(np.float32),
        valid=valid,
        messages=messages + (extra_turns or []),
        task="counting",
        split="train",
    )


def supervised_text(processor: Any, batch: dict[str, torch.Tensor], row: int) -> str:
    labels = batch["labels"][row]
    return str(processor.tokenizer.decode(labels[labels != IGNORE_INDEX]))


def test_labels_mask_everything_but_the_assistant_answer_and_its_end_token(tiny: tuple[Any, Any]) -> None:
    _, processor = tiny
    batch = Collator(processor)([sample("3"), sample("A field of rice.", seed=1)])
    assert supervised_text(processor, batch, 0) == "3<|im_end|>"
    assert supervised_text(processor, batch, 1) == "A field of rice.<|im_end|>"
    # where labels are set they equal the input ids; nothing in the prompt (system, image, question) is learned
    for row in range(2):
        lab, ids = batch["labels"][row], batch["input_ids"][row]
        on = lab != IGNORE_INDEX
        assert torch.equal(lab[on], ids[on])
        first = int(on.nonzero().min())
        prompt = processor.tokenizer.decode(ids[:first])
        assert prompt.endswith("<|im_start|>assistant\n") and "How many ships?" in prompt
    # padding is never learned
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_every_assistant_turn_of_a_multi_turn_chat_is_learned(tiny: tuple[Any, Any]) -> None:
    _, processor = tiny
    turns = [{"role": "user", "content": "And planes?"}, {"role": "assistant", "content": "0"}]
    batch = Collator(processor)([sample("2", extra_turns=turns)])
    assert supervised_text(processor, batch, 0) == "2<|im_end|>0<|im_end|>"


def test_processor_outputs_are_kept_and_image_tensors_concatenated(tiny: tuple[Any, Any]) -> None:
    _, processor = tiny
    batch = Collator(processor)([sample(size=(56, 84)), sample(size=(84, 56), seed=1)])
    assert batch["image_grid_thw"].tolist() == [[1, 6, 4], [1, 4, 6]]
    assert batch["pixel_values"].shape[0] == 2 * 24  # 24 patches per image
    n_image = (batch["input_ids"] == processor.image_token_id).sum(1)
    assert n_image.tolist() == [6, 6]  # 24 patches / (2 x 2 merge)


def test_truncation_cuts_the_text_tail_and_never_the_image(tiny: tuple[Any, Any]) -> None:
    _, processor = tiny
    long = sample("x" * 400)
    full = Collator(processor)([long])
    collator = Collator(processor, max_length=120)
    cut = collator([long])
    assert cut["input_ids"].shape[1] == 120 < full["input_ids"].shape[1]
    image_id = processor.image_token_id
    assert (cut["input_ids"] == image_id).sum() == (full["input_ids"] == image_id).sum()
    assert torch.equal(cut["input_ids"][0], full["input_ids"][0, :120])
    assert collator.truncated == 1
    # what is left of the answer is still learned
    assert supervised_text(processor, cut, 0).startswith("xxx")


def test_max_length_inside_the_image_block_is_an_error(tiny: tuple[Any, Any]) -> None:
    _, processor = tiny
    with pytest.raises(ValueError, match="max_length=20 cuts its image"):
        Collator(processor, max_length=20)([sample("x" * 50)])


def test_anchors_are_padded_to_the_largest_s_with_a_mask() -> None:
    a, b = sample(s=4, invalid=(2,)), sample(s=9, seed=1)
    out = pad_anchors([a, b])
    assert out["aef_features"].shape == (2, 9, 64) and out["aef_features"].dtype == torch.float32
    assert out["aef_positions"].shape == (2, 9, 2)
    assert out["aef_mask"].dtype == torch.bool
    assert out["aef_mask"][0].tolist() == [True, True, False, True] + [False] * 5
    assert out["aef_mask"][1].all()
    assert torch.equal(out["aef_features"][0, :4], torch.from_numpy(a.features))
    assert (out["aef_features"][0, 4:] == 0).all() and (out["aef_positions"][0, 4:] == 0).all()
    assert torch.equal(out["aef_positions"][1], torch.from_numpy(b.positions))


def test_a_sample_without_anchors_gets_an_all_false_mask() -> None:
    out = pad_anchors([sample(s=0), sample(s=3, seed=1)])
    assert out["aef_mask"].shape == (2, 3)
    assert not out["aef_mask"][0].any() and out["aef_mask"][1].all()


def test_generation_batches_are_left_padded_prompts_without_the_answer(tiny: tuple[Any, Any]) -> None:
    _, processor = tiny
    samples = [sample("3", question="Q?"), sample("4", question="A much longer question?", seed=1)]
    batch = Collator(processor, generation=True)(samples)
    assert "labels" not in batch
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()  # left padding
    for row in range(2):
        text = processor.tokenizer.decode(batch["input_ids"][row][batch["attention_mask"][row] == 1])
        assert text.endswith("<|im_start|>assistant\n")
        assert reference_answer(samples[row]) not in text.split("assistant\n")[-1]


def test_a_collated_batch_trains_the_tiny_model(tiny: tuple[Any, Any]) -> None:
    """The batch is what FusarGPT takes: a finite loss that only counts the answer tokens."""
    from model.tlm import TLM, FusarGPT, TLMConfig
    from tests.model.conftest import fresh_base

    _, processor = tiny
    model = FusarGPT(fresh_base(), TLM(TLMConfig(), 64))
    batch = Collator(processor)([sample("3"), sample("12", seed=1, s=2)])
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0


def test_a_generation_prompt_is_never_truncated(tiny: tuple[Any, Any]) -> None:
    _, processor = tiny
    with pytest.raises(ValueError, match=r"prompt has \d+ tokens > max_length=60"):
        Collator(processor, max_length=60, generation=True)([sample(question="why? " * 20)])
