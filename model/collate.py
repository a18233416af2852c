"""Turn `model.data.Sample`s into one training (or generation) batch for the base VLM + TLM.

Each sample becomes one chat rendered by the processor's own chat template, with the image as the
first content item of the first user turn (the Qwen-VL convention: `<|vision_start|><|image_pad|>...`).
The processor expands the image placeholder into the image's visual tokens and returns its pixel
tensors; we add

- `labels`: -100 everywhere except the tokens of the assistant turns, including each turn's
  end-of-turn token (`<|im_end|>` for Qwen), so the model learns to stop;
- `aef_features` (B, S_max, 64), `aef_positions` (B, S_max, 2), `aef_mask` (B, S_max): the anchors padded
  to the batch's largest S; the mask is False for padding and for invalid anchors.

Why samples are processed one by one and padded here (not by the processor): truncation must never
cut an image's tokens (the vision tower would then produce more features than placeholders and the
base model raises), and labels need per-sample assistant spans.

Truncation policy (max_length): the text is cut from the END, i.e. the tail of the last turns (in
practice the end of the assistant answer) is dropped; the image block and everything before it are
always kept. A sample whose cut leaves no supervised token still trains nothing (all labels -100) and is
counted in `Collator.truncated` / logged. If max_length cannot even hold the prompt up to the end
of the image block, the collator raises (raise max_length or lower image_size).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from model.data import Sample

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""The label value cross-entropy ignores (PyTorch and transformers convention)."""


def chat_messages(sample: Sample, *, generation: bool = False) -> list[dict[str, Any]]:
    """The sample's chat in the processor's multimodal message format, the image first in the first user
    turn. With `generation`, the chat is cut before the LAST assistant turn (the prompt to answer)."""
    messages = list(sample.messages)
    if not messages or messages[0]["role"] != "user":
        raise ValueError(f"sample {sample.id}: messages must start with a user turn, got {messages[:1]}")
    if generation:
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        messages = messages[: answers[-1]] if answers else messages
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        content: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}]
        if i == 0:
            content.insert(0, {"type": "image"})
        out.append({"role": m["role"], "content": content})
    return out


def reference_answer(sample: Sample) -> str:
    """The last assistant turn: what generation on `chat_messages(sample, generation=True)` should produce."""
    answers = [m["content"] for m in sample.messages if m["role"] == "assistant"]
    if not answers:
        raise ValueError(f"sample {sample.id} has no assistant turn to use as a reference")
    return answers[-1]


class Collator:
    """Collate `Sample`s into the base processor's tensors + labels + padded anchors.

    `generation=True` builds prompts for `generate` instead: the chat up to (not including) the last
    assistant turn plus the template's generation prompt, LEFT-padded (decoder-only generation needs the
    prompts right-aligned), no labels.
    """

    def __init__(self, processor: Any, *, max_length: int = 2048, generation: bool = False) -> None:
        if max_length < 1:
            raise ValueError(f"Collator max_length must be >= 1, got {max_length}")
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_length = max_length
        self.generation = generation
        self.truncated = 0  # samples whose text was cut (for the logs / metrics)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        self.image_token_ids = _image_token_ids(processor)
        self.header_ids, self.end_id = _assistant_markers(processor)

    # -- one sample ---------------------------------------------------------------------------------
    def render(self, sample: Sample) -> str:
        """The chat template's text for the sample (the image as a placeholder, not yet expanded)."""
        msgs = chat_messages(sample, generation=self.generation)
        text = self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=self.generation)
        return str(text)

    def text_length(self, sample: Sample) -> int:
        """Tokens of the rendered chat with the image as its one placeholder: what orders chats by length
        (the images of a run share one size, so their visual tokens add the same to every chat)."""
        return len(self.tokenizer(self.render(sample), add_special_tokens=False)["input_ids"])

    def encode(self, sample: Sample) -> dict[str, torch.Tensor]:
        """Processor outputs for one sample (batch dim 1), truncated; plus `labels` when training."""
        enc = self.processor(text=[self.render(sample)], images=[sample.image], return_tensors="pt")
        out = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
        ids = out["input_ids"][0]  # (L,)
        keep = self._keep_length(sample, ids)
        token_keys = _token_level_keys(out)
        for k in token_keys:
            out[k] = out[k][:, :keep]
        if not self.generation:
            out["labels"] = self.labels(out["input_ids"][0]).unsqueeze(0)
            if keep < ids.numel() and not (out["labels"] != IGNORE_INDEX).any():
                logger.warning("sample %s: truncation to %d tokens left no answer token", sample.id, keep)
        return out

    def _keep_length(self, sample: Sample, ids: torch.Tensor) -> int:
        """How many leading tokens to keep: max_length, but never inside or before the image block."""
        n = int(ids.numel())
        if n <= self.max_length:
            return n
        if self.generation:  # cutting a prompt's tail would cut the question or the assistant header
            raise ValueError(
                f"sample {sample.id}: its prompt has {n} tokens > max_length={self.max_length}; "
                "raise max_length or shorten the question"
            )
        is_image = torch.isin(ids, torch.tensor(sorted(self.image_token_ids), dtype=ids.dtype))
        last_image = int(is_image.nonzero().max()) if is_image.any() else -1
        # keep the token right after the image block too (Qwen: <|vision_end|>)
        min_keep = last_image + 2 if last_image >= 0 else 1
        if self.max_length < min_keep:
            raise ValueError(
                f"sample {sample.id}: max_length={self.max_length} cuts its image ({min_keep} tokens up to "
                "the end of the image block); raise max_length or lower image_size in the config"
            )
        self.truncated += 1
        logger.debug("sample %s: %d tokens truncated to %d", sample.id, n, self.max_length)
        return self.max_length

    def labels(self, ids: torch.Tensor) -> torch.Tensor:
        """(L,) input ids -> (L,) labels: the ids inside assistant turns (after the assistant header, up to
        and including the end-of-turn token), -100 elsewhere."""
        labels = torch.full_like(ids, IGNORE_INDEX)
        seq = ids.tolist()
        h = self.header_ids
        i = 0
        while i <= len(seq) - len(h):
            if seq[i : i + len(h)] != h:
                i += 1
                continue
            start = i + len(h)
            end = start
            while end < len(seq) and seq[end] != self.end_id:
                end += 1
            stop = min(end + 1, len(seq))  # include the end-of-turn token when present
            labels[start:stop] = ids[start:stop]
            i = stop
        return labels

    # -- the batch ----------------------------------------------------------------------------------
    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("Collator got an empty batch")
        encoded = [self.encode(s) for s in samples]
        batch = self._pad_tokens(encoded)
        for key in _non_token_keys(encoded[0]):
            batch[key] = torch.cat([e[key] for e in encoded], dim=0)
        batch.update(pad_anchors(samples))
        return batch

    def _pad_tokens(self, encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        keys = _token_level_keys(encoded[0]) + (["labels"] if "labels" in encoded[0] else [])
        width = max(e["input_ids"].shape[1] for e in encoded)
        fill = {"input_ids": self.pad_id, "labels": IGNORE_INDEX}
        out: dict[str, torch.Tensor] = {}
        for key in keys:
            rows = []
            for e in encoded:
                t = e[key][0]
                pad = torch.full((width - t.numel(),), fill.get(key, 0), dtype=t.dtype)
                rows.append(torch.cat([pad, t] if self.generation else [t, pad]))
            out[key] = torch.stack(rows)
        return out


def pad_anchors(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Anchors of the batch padded to its largest S: features (B, S, 64) float32, positions (B, S, 2)
    float32, mask (B, S) bool (False = padding or an invalid anchor)."""
    s_max = max(int(s.features.shape[0]) for s in samples)
    dim = next((int(s.features.shape[1]) for s in samples if s.features.ndim == 2), 64)
    b = len(samples)
    feats = np.zeros((b, s_max, dim), np.float32)  # (B, S, 64)
    pos = np.zeros((b, s_max, 2), np.float32)  # (B, S, 2)
    mask = np.zeros((b, s_max), bool)  # (B, S)
    for i, s in enumerate(samples):
        n = int(s.features.shape[0])
        if n == 0:
            continue
        if s.positions.shape != (n, 2) or s.valid.shape != (n,):
            raise ValueError(
                f"sample {s.id}: anchors disagree: features {s.features.shape}, positions {s.positions.shape}, "
                f"valid {s.valid.shape}"
            )
        feats[i, :n] = s.features
        pos[i, :n] = s.positions
        mask[i, :n] = s.valid
    return {
        "aef_features": torch.from_numpy(feats),
        "aef_positions": torch.from_numpy(pos),
        "aef_mask": torch.from_numpy(mask),
    }


def _token_level_keys(enc: dict[str, torch.Tensor]) -> list[str]:
    """Processor outputs aligned with input_ids (input_ids, attention_mask, mm_token_type_ids, ...)."""
    shape = enc["input_ids"].shape
    return [k for k, v in enc.items() if k != "labels" and v.dim() == 2 and v.shape == shape]


def _non_token_keys(enc: dict[str, torch.Tensor]) -> list[str]:
    """Image-side outputs (pixel_values, image_grid_thw): concatenated along dim 0 across samples."""
    tok = set(_token_level_keys(enc)) | {"labels"}
    return [k for k in enc if k not in tok]


def _image_token_ids(processor: Any) -> set[int]:
    """The token ids of visual placeholders (image pad, and vision start/end where they exist)."""
    tok = getattr(processor, "tokenizer", processor)
    ids: set[int] = set()
    for attr in ("image_token_id", "video_token_id"):
        value = getattr(processor, attr, None)
        if isinstance(value, int):
            ids.add(value)
    for name in (
        "<|image_pad|>",
        "<|vision_start|>",
        "<|vision_end|>",
        getattr(processor, "image_token", None),
    ):
        if isinstance(name, str):
            tid = tok.convert_tokens_to_ids(name)
            if isinstance(tid, int) and tid != tok.unk_token_id:
                ids.add(tid)
    if not ids:
        raise ValueError("the processor defines no image token (image_token_id / <|image_pad|>)")
    return ids


def _assistant_markers(processor: Any) -> tuple[list[int], int]:
    """(assistant header ids, end-of-turn id), derived from the chat template itself so the collator is
    not tied to one template: the header is what add_generation_prompt appends; the end-of-turn token is
    the first token the template writes after an assistant message's text."""
    tok = getattr(processor, "tokenizer", processor)
    user = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    bare = str(processor.apply_chat_template(user, tokenize=False, add_generation_prompt=False))
    prompt = str(processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True))
    if not prompt.startswith(bare) or prompt == bare:
        raise ValueError("the chat template has no generation prompt; cannot locate assistant turns")
    header = prompt[len(bare) :]
    marker = "ANSWER_MARKER_7F3A"
    chat = [*user, {"role": "assistant", "content": [{"type": "text", "text": marker}]}]
    full = str(processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=False))
    after = full[full.index(marker) + len(marker) :]
    header_ids = tok(header, add_special_tokens=False)["input_ids"]
    after_ids = tok(after, add_special_tokens=False)["input_ids"]
    if not header_ids or not after_ids:
        raise ValueError("the chat template writes no assistant header or end-of-turn token")
    return list(header_ids), int(after_ids[0])


__all__ = ["IGNORE_INDEX", "Collator", "chat_messages", "pad_anchors", "reference_answer"]
