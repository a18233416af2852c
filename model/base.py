"""The base VLM: a tiny Qwen2.5-VL / Qwen3-VL built in code for tests, and the real one for training.

FUSAR-GPT leaves its base (Qwen2.5-VL-7B-Instruct) unchanged, so this module only builds or loads it.
`build_tiny_base` assembles the REAL model, image-processor and processor classes of transformers with
tiny sizes and a tokenizer made in code, so every test runs the real code paths (patch merger, mRoPE,
chat template, image placeholders) on CPU in milliseconds, and nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import string
from typing import Any, cast

import torch
from tokenizers import Tokenizer, decoders
from tokenizers.models import BPE
from transformers import PreTrainedModel, PreTrainedTokenizerFast
from transformers.processing_utils import ProcessorMixin

log = logging.getLogger(__name__)

FAMILIES = ("qwen2_5_vl", "qwen3_vl")

# The Qwen special tokens a VLM chat needs, in the order their ids are assigned after the characters.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2.5-VL-Instruct's own chat template (image placeholders expanded by the processor).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Tiny sizes: big enough to exercise GQA, mRoPE sections, window attention and the 2x2 merger.
TINY_TEXT_HIDDEN = 64
TINY_PATCH = 14
TINY_MERGE = 2
# The processor keeps any image between these pixel counts (multiples of 28 pass unchanged),
# so a 504 x 504 chip gives the paper's 36 x 36 patch grid.
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 1024 * 28 * 28
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer (printable ASCII + Qwen specials) with Qwen's chat template.

    Character level because it needs no merges file yet encodes any answer the tasks produce
    (digits, JSON boxes, English captions); ids of the specials follow the characters.
    """
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {"<unk>": 0}
    for ch in chars:
        vocab[ch] = len(vocab)
    core = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=4096,
        padding_side="right",
    )
    tok.add_special_tokens({"pad_token": "<|endoftext|>"})
    return tok


def build_tiny_image_processor(patch_size: int = TINY_PATCH, merge_size: int = TINY_MERGE) -> Any:
    """The real Qwen2-VL image processor class (PIL backend: no torchvision needed), configured in code."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        size={"shortest_edge": TINY_MIN_PIXELS, "longest_edge": TINY_MAX_PIXELS},
        patch_size=patch_size,
        temporal_patch_size=2,
        merge_size=merge_size,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def _token_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    ids = {t: int(cast(int, tok.convert_tokens_to_ids(t))) for t in SPECIAL_TOKENS}
    if any(i == tok.unk_token_id for i in ids.values()):
        raise RuntimeError("tiny tokenizer lost a Qwen special token; check SPECIAL_TOKENS in model/base.py")
    return ids


TINY_VISION: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": TINY_TEXT_HIDDEN,
    "patch_size": TINY_PATCH,
    "spatial_merge_size": TINY_MERGE,
    "temporal_patch_size": 2,
}


def _heads(width: int) -> int:
    """Attention heads of a built-in base of LLM width `width`: head_dim 16 up to width 64, then 128."""
    return 4 if width <= 64 else max(4, width // 128)


def _mrope_section(head_dim: int) -> list[int]:
    """mRoPE (t, h, w) sections summing to head_dim / 2 ([2, 3, 3] at 16, [16, 24, 24] at 128)."""
    t = head_dim // 8
    h = (head_dim // 2 - t) // 2
    return [t, h, head_dim // 2 - t - h]


def _tiny_text(
    tok: PreTrainedTokenizerFast, ids: dict[str, int], width: int = TINY_TEXT_HIDDEN, layers: int = 2
) -> dict[str, Any]:
    """The text-model sizes both tiny families share."""
    heads = _heads(width)
    return {
        "vocab_size": len(tok),
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _special_ids(ids: dict[str, int]) -> dict[str, Any]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _tiny_qwen2_5_vl(
    tok: PreTrainedTokenizerFast, width: int = TINY_TEXT_HIDDEN, layers: int = 2
) -> PreTrainedModel:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = _token_ids(tok)
    head_dim = width // _heads(width)  # 16 at the default width 64; mRoPE sections sum to head_dim / 2
    cfg = Qwen2_5_VLConfig(
        text_config={
            **_tiny_text(tok, ids, width, layers),
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": _mrope_section(head_dim),
            },
        },
        vision_config={
            **TINY_VISION,
            "out_hidden_size": width,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        **_special_ids(ids),
    )
    return Qwen2_5_VLForConditionalGeneration(cfg)


def _tiny_qwen3_vl(tok: PreTrainedTokenizerFast) -> PreTrainedModel:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = _token_ids(tok)
    cfg = Qwen3VLConfig(
        text_config={
            **_tiny_text(tok, ids),
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            **TINY_VISION,
            "num_position_embeddings": 144,
            "deepstack_visual_indexes": [0],
        },
        **_special_ids(ids),
    )
    return Qwen3VLForConditionalGeneration(cfg)


def _video_processor(family: str) -> Any | None:
    """The real video processor when torchvision is installed; None otherwise (we never feed videos)."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        if family == "qwen2_5_vl":
            from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

            return Qwen2VLVideoProcessor(patch_size=TINY_PATCH, merge_size=TINY_MERGE)
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        return Qwen3VLVideoProcessor(patch_size=TINY_PATCH, merge_size=TINY_MERGE)
    except ImportError:  # transformers' video processors import torchvision at module level
        return None


def _image_only(cls: type) -> type:
    """`cls` (the real processor class) accepting video_processor=None: images-only, no torchvision.

    transformers 5.x type-checks every processor attribute, and its video processors need torchvision,
    which the CPU test environment does not have. Everything else is the real class.
    """

    class ImageOnly(cls):  # type: ignore[valid-type,misc]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

        def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
            """Tokenizer (with its chat template) + image processor: what `load_processor` reads back."""
            files = list(self.tokenizer.save_pretrained(save_directory, **kwargs))
            files += list(self.image_processor.save_pretrained(save_directory, **kwargs))
            return files

    ImageOnly.__name__ = ImageOnly.__qualname__ = cls.__name__
    return ImageOnly


def _processor_class(family: str) -> type[ProcessorMixin]:
    from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor

    return Qwen2_5_VLProcessor if family == "qwen2_5_vl" else Qwen3VLProcessor


def _processor(family: str, tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    cls = _processor_class(family)
    video = _video_processor(family)
    proc_cls = cls if video is not None else _image_only(cls)
    processor: ProcessorMixin = proc_cls(
        image_processor=build_tiny_image_processor(),
        tokenizer=tok,
        video_processor=video,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return processor


def build_tiny_base(
    family: str = "qwen2_5_vl", *, seed: int = 0, width: int = TINY_TEXT_HIDDEN, layers: int = 2
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A randomly initialised tiny VLM of the given family and its processor; nothing is downloaded.

    Seeded so two calls give identical weights (tests compare a wrapped model against the bare one).
    width / layers (Qwen2.5-VL only) size the LLM, e.g. 1024 x 4 for the GPU learning bench.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown base family {family!r}; use one of {FAMILIES}")
    if (width, layers) != (TINY_TEXT_HIDDEN, 2) and family != "qwen2_5_vl":
        raise ValueError("width / layers are only supported for the qwen2_5_vl tiny base")
    if width % 64 or layers < 1:
        raise ValueError(f"tiny base width must be a multiple of 64 and layers >= 1, got {width} x {layers}")
    tok = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _tiny_qwen2_5_vl(tok, width, layers) if family == "qwen2_5_vl" else _tiny_qwen3_vl(tok)
        # The output head of a trained LM spans logits of +-15 or more. At transformers' default init (std
        # 0.02) a width-64 head behind the frozen final RMSNorm spans about +-1.3, so whatever LoRA learns the
        # next-token distribution stays nearly uniform (loss >= ~2.2 / token) and greedy decoding picks a
        # near-tie (the demo's empty answers). std 16 / width gives rows of norm 16 / sqrt(width).
        torch.nn.init.normal_(model.lm_head.weight, std=16.0 / hidden_size(model))
    model.eval()
    return model, _processor(family, tok)


def load_processor(name_or_path: str, family: str) -> ProcessorMixin:
    """The checkpoint's processor: AutoProcessor when torchvision is installed, else images-only.

    transformers' Qwen video processors import torchvision; without it we assemble the same processor
    class from the checkpoint's tokenizer, chat template and image-processor settings (PIL backend).
    """
    from transformers import AutoProcessor, AutoTokenizer

    if importlib.util.find_spec("torchvision") is not None:
        processor: ProcessorMixin = AutoProcessor.from_pretrained(name_or_path)
        return processor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    cls = _processor_class(family)
    tok = AutoTokenizer.from_pretrained(name_or_path)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(name_or_path)
    processor = _image_only(cls)(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=None,
        chat_template=getattr(tok, "chat_template", None),
    )
    return processor


def load_base(
    name_or_path: str, *, dtype: torch.dtype | str | None = None, attn_implementation: str | None = None
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load a real Qwen2.5-VL / Qwen3-VL checkpoint and its processor by hub id or local folder.

    Honours HF_HUB_OFFLINE (set it on clusters without internet: a missing local file then fails fast).
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type not in FAMILIES:
        raise ValueError(
            f"{name_or_path}: model_type {config.model_type!r} is not supported; use a {FAMILIES} checkpoint"
        )
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
    processor = load_processor(name_or_path, config.model_type)
    log.info("loaded base %s (%s)", name_or_path, config.model_type)
    return model, processor


def save_base(model: PreTrainedModel, processor: Any, folder: str) -> None:
    """Save a base and its processor so `load_base(folder)` reads them back (images-only processors too)."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def hidden_size(model: Any) -> int:
    """C, the LLM width the visual tokens are projected to (what the TLM's gamma/beta must match)."""
    cfg = getattr(model, "config", None)
    text = getattr(cfg, "text_config", None)
    size = getattr(text, "hidden_size", None) or getattr(cfg, "hidden_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__} has no config.text_config.hidden_size; pass a Qwen VLM")
    return int(size)


def bare_model(model: Any) -> Any:
    """The transformers model itself: peft's wrapper (after apply_lora) taken off, if there is one."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def visual_module(model: Any) -> torch.nn.Module:
    """The vision tower whose output (after the patch merger) are the visual tokens the LLM sees.

    transformers 5.x: `Qwen*VLForConditionalGeneration.model.visual`; peft wrappers are unwrapped.
    """
    inner = model
    for _ in range(4):  # PeftModel -> LoraModel -> ForConditionalGeneration -> Model
        if hasattr(inner, "visual") and isinstance(inner.visual, torch.nn.Module):
            return inner.visual
        nxt = getattr(inner, "model", None) or getattr(inner, "base_model", None)
        if nxt is None or nxt is inner:
            break
        inner = nxt
    raise ValueError(
        f"{type(model).__name__} has no .model.visual vision tower; pass a Qwen2.5-VL / Qwen3-VL"
    )
