"""The one-screen summary of a finished build that `triplet-builder build` prints, from its manifest."""

from __future__ import annotations

from typing import Any


def _retry_lines(manifest: dict[str, Any]) -> list[str]:
    """One line per stage with its clients' retry and error counters, by kind (e.g. llm_retries_http_429)."""
    out = []
    for stage, st in manifest["stages"].items():
        kinds = {
            k: v
            for k, v in sorted((st.get("extra") or {}).items())
            if v and ("retries" in k or "errors_" in k or k.endswith("_failed"))
        }
        if kinds:
            out.append(f"  retried ({stage}): " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    return out


def summary(manifest: dict[str, Any]) -> str:
    c = manifest["counts"]
    lines = [
        f"dataset {manifest['name']}: {c['scenes']} scene(s), {c['windows']} window(s) in the region, "
        f"{c['chips_kept']} chip(s) kept, {c['chips_rejected']} rejected, {c['shards']} shard(s), "
        f"{manifest['seconds']:.1f} s",
    ]
    if c["rejected_by_reason"]:
        lines.append("  rejected: " + ", ".join(f"{k} {v}" for k, v in c["rejected_by_reason"].items()))
    if c["rows_per_split"]:
        lines.append("  splits:   " + ", ".join(f"{k} {v}" for k, v in c["rows_per_split"].items()))
    sp = manifest.get("splits") or {}
    if sp:
        lines.append(
            "  blocks:   "
            + ", ".join(f"{k} {v['blocks']}" for k, v in sp["per_split"].items())
            + f"; largest area shared across splits {sp['cross_split']['max_shared_m2']:g} m2"
        )
    lines += [f"  WARNING: {w}" for w in sp.get("warnings", [])]
    for s in manifest["scenes_skipped"]:
        lines.append(f"  skipped {s['scene_id']}: {s['reason'].replace('_', ' ')}")
    if "labels" in c:
        lc = c["labels"]
        lines.append(
            f"  labels:   {lc['in_chips']} in chips, {lc['matched_outside_chips']} matched outside the chips, "
            f"{lc['unmatched']} unmatched (match: {lc['match']})"
        )
    lines += _retry_lines(manifest)
    for w in manifest.get("warnings", []):
        lines.append(f"  {w['level'].lower()} x{w['count']}: {w['first']} ({w['logger']})")
    if c["tasks_reused"]:
        lines.append(f"  reused {c['tasks_reused']} finished task(s) from an earlier run")
    rerun = c.get("tasks_rerun") or {}
    if rerun:
        lines.append(
            "  ran again: "
            + ", ".join(f"{n} {why}" for why, n in rerun.items())
            + " task(s) of an earlier run"
        )
    if c.get("files_removed"):
        lines.append(f"  removed {c['files_removed']} file(s) of an earlier run that this plan does not make")
    if manifest["synthetic_embeddings"]:
        lines.append("  NOTE: aef_* columns hold the demo's SYNTHETIC embeddings, not AlphaEarth")
    return "\n".join(lines)


__all__ = ["summary"]
