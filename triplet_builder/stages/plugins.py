"""Finding stage classes named in a region file's `stages:` list: an installed plugin's entry point (group
`triplet_builder.stages`, `name = "package.module:Class"`) or a dotted path `package.module:Class`.

Both name a subclass of `triplet_builder.stages.base.Stage` with a `name` and a `config_model` (annotation
stages: `triplet_builder.stages.annotation.AnnotationStage`). Errors are one line naming the stage and
what to do.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from pydantic import BaseModel

from triplet_builder.stages.base import Stage

ENTRY_POINT_GROUP = "triplet_builder.stages"


def installed() -> dict[str, str]:
    """Entry point name -> `package.module:Class` of every installed stage plugin."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import(ref: str, what: str) -> object:
    module, _, attr = ref.partition(":")
    try:
        obj: object = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"{what} {ref!r} cannot be imported ({type(e).__name__}: {cause}): install the package that "
            "provides it or fix the path"
        ) from None
    return obj


def load_stage_class(ref: str) -> type[Stage]:
    """The stage class an entry point name or a `package.module:Class` path names."""
    if ":" in ref:
        obj = _import(ref, "stage")
    else:
        found = installed()
        if ref not in found:
            have = ", ".join(sorted(found)) or "none"
            raise ValueError(
                f"stage {ref!r} is neither an installed plugin (entry points of group {ENTRY_POINT_GROUP}: "
                f"{have}) nor a 'package.module:Class' path: install the plugin's package or fix the name"
            )
        obj = _import(found[ref], f"stage {ref!r}: entry point")
    if not (isinstance(obj, type) and issubclass(obj, Stage)):
        raise ValueError(f"stage {ref!r} is not a subclass of triplet_builder.stages.base.Stage")
    model = getattr(obj, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(f"stage {ref!r} declares no config_model (a pydantic model of its config)")
    return obj
