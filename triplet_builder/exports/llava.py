"""Export to LLaVA-style conversation JSON, the input of the common VLM trainers (LLaVA, LLaMA-Factory's
sharegpt format, ms-swift):

    DEST/images/<chip_id>.png      the chip as 8-bit RGB
    DEST/llava_<split>.json        [{"id", "image", "conversations": [{"from": "human" | "gpt", "value"}]}]

One record per chip: the caption request and caption first (`<image>` once, in the first human turn),
then its QA items. Boxes stay in the chip image's own pixels, as the questions state. AlphaEarth anchors
have no place in this format: use the fusar-gpt export for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from triplet_builder.exports.fusar_gpt import check_dest, safe_name
from triplet_builder.exports.rows import ExportRow, iter_rows


def conversation(row: ExportRow) -> list[dict[str, str]]:
    turns = [
        {"from": "human", "value": "<image>\n" + row.messages[0]["content"]},
        {"from": "gpt", "value": row.messages[1]["content"]},
    ]
    for item in row.qa:
        turns += [{"from": "human", "value": item["question"]}, {"from": "gpt", "value": item["answer"]}]
    return turns


def export_llava(output_dir: str | Path, dest: str | Path, *, split: str | None = None) -> dict[str, Any]:
    """Write the LLaVA layout of a build folder's kept rows to `dest`; returns records per file."""
    dest = Path(dest)
    check_dest(dest)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    per_split: dict[str, list[dict[str, Any]]] = {}
    for row in iter_rows(output_dir, split=split):
        name = safe_name(row.chip_id)
        (dest / "images" / f"{name}.png").write_bytes(row.rgb_png())
        per_split.setdefault(row.split, []).append(
            {"id": row.chip_id, "image": f"images/{name}.png", "conversations": conversation(row)}
        )
    counts = {}
    for s, recs in sorted(per_split.items()):
        (dest / f"llava_{s}.json").write_text(json.dumps(recs, ensure_ascii=False, indent=1) + "\n")
        counts[f"llava_{s}.json"] = len(recs)
    return {"format": "llava", "chips": sum(counts.values()), "files": counts}
