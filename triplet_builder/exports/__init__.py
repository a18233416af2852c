"""Exports of built shards to other trainers' formats (no torch needed): the FUSAR-GPT release's JSONL
(`fusar_gpt`) and LLaVA conversation JSON (`llava`). `export(output_dir, dest, fmt)` is what the CLI runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMATS = ("fusar-gpt", "llava")


def export(output_dir: str | Path, dest: str | Path, fmt: str, *, split: str | None = None) -> dict[str, Any]:
    """Export the shards of a build folder to `dest` in format `fmt`; returns counts per file."""
    if fmt == "fusar-gpt":
        from triplet_builder.exports.fusar_gpt import export_fusar_gpt

        return export_fusar_gpt(output_dir, dest, split=split)
    if fmt == "llava":
        from triplet_builder.exports.llava import export_llava

        return export_llava(output_dir, dest, split=split)
    raise ValueError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "export"]
