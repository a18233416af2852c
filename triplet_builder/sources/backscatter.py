"""Where a file scene's backscatter convention (sigma0, gamma0, beta0) comes from: the region file, a JSON
sidecar, the file's own metadata items or its naming convention, in that order; `unknown` when none states
it. Never guessed from the pixels."""

from __future__ import annotations

import re
from typing import Any

from triplet_builder.record import Backscatter
from triplet_builder.sources.names import NameInfo

# GDAL metadata items that state the backscatter convention, and the words their values use
_BACKSCATTER_TAGS = (
    "BACKSCATTER",
    "BACKSCATTER_CONVENTION",
    "OUTPUT_BACKSCATTER_NORMALIZATION_CONVENTION",
    "RADIOMETRIC_NORMALIZATION",
)
_BACKSCATTER_WORDS = re.compile(r"\b(?P<kind>sigma|gamma|beta)[-_ ]?(?:0|nought|naught)\b", re.IGNORECASE)


def backscatter_of(
    declared: str, sidecar: dict[str, Any], tags: dict[str, str], info: NameInfo | None
) -> tuple[str, str]:
    """(convention, where it comes from): region file > sidecar > file tags > naming convention > unknown.

    Nothing is guessed: a file that states no convention is `unknown` with source `none`.
    """
    if declared != "auto":
        return declared, "declared"
    if sidecar.get("backscatter"):
        return str(sidecar["backscatter"]), "sidecar"
    for key in _BACKSCATTER_TAGS:
        for k, v in tags.items():
            if k.upper() == key and (m := _BACKSCATTER_WORDS.search(v)):
                return m["kind"].lower() + "0", "tags"
    if info is not None and info.backscatter:
        return info.backscatter, "filename"
    return Backscatter.UNKNOWN.value, "none"
