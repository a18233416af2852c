"""Finding stage classes named in a region file's `stages:` list: an installed plugin's entry point (group
`triplet_builder.stages`, `name = "package.module:Class"`) or a dotted path `package.module:Class`.

Both name a subclass of `triplet_builder.stages.base.Stage` with a `name` and a `config_model` (annotation
stages: `triplet_builder.stages.annotation.AnnotationStage`). Errors are one line naming the stage and
what to do.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from triplet_builder.stages.base import Stage

if TYPE_CHECKING:
    from triplet_builder.config import StageEntry

ENTRY_POINT_GROUP = "triplet_builder.stages"
# the annotation stages this package ships, found by name like installed plugins (a plugin cannot take
# these names)
BUILTIN: dict[str, str] = {
    "land_cover": "triplet_builder.stages.land_cover:LandCover",
    "osm": "triplet_builder.stages.osm:Osm",
}


def installed() -> dict[str, str]:
    """Stage name -> `package.module:Class` of every built-in stage and installed stage plugin."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN}


def _import(ref: str, what: str) -> object:
    module, _, attr = ref.partition(":")
    try:
        obj: object = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # third-party code: any failure at import is reported naming the stage
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


def check_entries(
    entries: list[StageEntry], base: Path, *, labels: bool = False
) -> tuple[list[StageEntry], list[str]]:
    """What the region file loader runs on `stages:`: find each stage, validate its config with its
    config_model (RegionPath fields resolved against the region file's folder `base`) and check the
    assembled list's order (`labels`: the region has facts.labels, so the labels stage is in it). The entries with validated configs, and the problems (one per invalid field,
    e.g. `stages[0].config.raster: ...`)."""
    from triplet_builder.config import _fmt_loc
    from triplet_builder.stages.assemble import assemble

    problems: list[str] = []
    out = list(entries)
    for i, e in enumerate(entries):
        try:
            cls = load_stage_class(e.name)
        except ValueError:
            continue  # assemble() names it
        model: type[BaseModel] = cls.config_model  # type: ignore[attr-defined]
        try:
            valid = model.model_validate(e.config, context={"base_dir": str(base)})
        except ValidationError as err:
            for x in err.errors():
                loc = ".".join(["config", *filter(None, [_fmt_loc(x["loc"])])])
                problems.append(f"stages[{i}].{loc}: {x['msg'].removeprefix('Value error, ')}")
            continue
        out[i] = e.model_copy(update={"config": valid.model_dump()})
    try:
        assemble(entries, labels=labels)
    except ValueError as err:
        problems.append(str(err))
    return out, problems
