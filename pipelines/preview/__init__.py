"""`triplet-builder preview OUTPUT`: one self-contained HTML page to look at a build folder: a map of the
chip footprints and scenes, chips with caption, QA and boxes, their anchors in false colour, counts per
stage and reject reason, the text-quality figures, and filters (split, scene, has targets).

collect.py reads the folder (manifest, metadata.parquet, the shards' needed rows and columns);
anchors.py makes the false colours; svg.py draws the map and the charts; render.py writes the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.preview.collect import PreviewError
from pipelines.preview.collect import collect as _collect  # not `collect`: that names the submodule
from pipelines.preview.render import render

DEFAULT_MAX_CHIPS = 120
DEFAULT_NAME = "preview.html"


def preview(
    output_dir: str | Path, out_file: str | Path | None = None, max_chips: int = DEFAULT_MAX_CHIPS
) -> dict[str, Any]:
    """Write the preview page of the build folder `output_dir` to `out_file` (default OUTPUT/preview.html);
    returns what was written: file, chips shown, chips kept, bytes."""
    data = _collect(output_dir, max_chips)
    html = render(data)
    dest = Path(out_file) if out_file is not None else Path(output_dir) / DEFAULT_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(dest)
    return {"file": str(dest), "chips": len(data.cards), "kept": data.kept, "bytes": dest.stat().st_size}


__all__ = ["DEFAULT_MAX_CHIPS", "PreviewError", "preview"]
