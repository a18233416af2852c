"""Benchmark: the padding share of training batches, in stream order vs length-grouped (model/batching.py).

Lengths are each chat's tokens as the collator builds it (text tokens with the tokenizer of the run, plus
the image's visual tokens at --image-size); shares per batch size and stage over the shards' train split.

    python -m bench.train_padding --data out/demo   # -> bench/out/train_padding.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from model.base import build_tiny_base
from model.batching import LengthGrouped, batches, padding_share
from model.collate import Collator
from model.data import ShardDataset


def measure(data: str, *, stage: str, sizes: list[int], group: int, image_size: int) -> dict[str, Any]:
    collator = Collator(build_tiny_base(seed=0)[1])
    visual = (image_size // 28) ** 2

    def ds() -> ShardDataset:
        return ShardDataset(data, split="train", stage=stage, image_size=image_size, shuffle_buffer=256)

    def length(s: Any) -> int:
        return collator.text_length(s) + visual - 1  # the placeholder becomes the visual tokens

    out: dict[str, Any] = {}
    for b in sizes:
        plain = [[length(s) for s in x] for x in batches(iter(ds()), b)]
        grouped = [[length(s) for s in x] for x in LengthGrouped(ds(), b, group, length)]
        out[str(b)] = {
            "plain": padding_share(plain),
            "grouped": padding_share(grouped),
            "batches": len(plain),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--data", default="out/demo")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--group", type=int, default=8, help="batches per length group")
    p.add_argument("--image-size", type=int, default=504)
    p.add_argument("--out", type=Path, default=Path("bench/out/train_padding.json"))
    a = p.parse_args(argv)
    res = {
        st: measure(a.data, stage=st, sizes=a.sizes, group=a.group, image_size=a.image_size)
        for st in ("caption", "qa")
    }
    res |= {"tokenizer": "tiny (character-level)", "image_size": a.image_size, "group": a.group}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
