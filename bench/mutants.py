"""The planted bugs of the mutation check (`python -m bench.mutation`, `make mutation`): one per entry, each
an exact snippet of a file (it must occur there exactly once), its replacement, the tests that must fail
with it, and the critical path of issue #14 it belongs to. `equivalent` (a reason) marks a mutant that
cannot change behaviour; it is expected to survive and reported as such."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """One planted bug."""

    path: str  # the critical path (issue #14 must-hold 1)
    name: str  # unique, short: what the bug is
    file: str  # relative to the repository root
    old: str  # exact snippet, exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest targets (files or node ids) that must fail
    equivalent: str = ""  # why it cannot change behaviour (then it is expected to survive)


AEF = "AlphaEarth de-quantization / orientation"
ANCHORS = "anchors and positions"
TLM = "TLM weights / release placement"
SPLIT = "split assignment"
CFAR = "CFAR (dense and fast paths)"
CHIP_ID = "chip ids"
CONSIST = "consistency checker"
LORA = "LoRA targets and the training step"
WIRING = "config wiring of remote sources"
PAYLOAD = "LLM request payload"
LABELS = "label matching"
SCHEMA = "writer schema"
HOST = "the step's host-side inputs"
FACTS = "surface facts against the pixels"
RESUME = "resume keys"
PLACE = "task placement"

T_QUANT = "tests/triplet_builder/embeddings/test_quantize.py"
T_COG = "tests/triplet_builder/embeddings/test_cog.py"
T_BLOCKS = "tests/triplet_builder/embeddings/test_block_cache.py"
T_PINNED = "tests/triplet_builder/test_pinned.py"
T_GEO = "tests/triplet_builder/test_tiling_geo_grid.py"
T_STAGES = "tests/pipelines/test_stages.py"
T_TLM = "tests/model/test_tlm.py"
T_TLM_FUSED = "tests/model/test_tlm_fused.py"
T_RELEASE = "tests/model/test_release.py"
T_SPLIT = "tests/pipelines/test_split_leakage.py"
T_CFAR = "tests/triplet_builder/facts/test_cfar.py"
T_CONS = "tests/triplet_builder/text/test_consistency.py"
T_ANN = "tests/triplet_builder/text/test_annotated_qa.py"
T_LORA = "tests/model/test_lora.py"
T_EFFICIENCY = "tests/model/test_efficiency.py"
T_HOST = "tests/model/test_host_index.py"
T_WINDOWS = "tests/model/test_vision_windows.py"
T_LLM = "tests/triplet_builder/text/test_llm.py"
T_LABELS = "tests/triplet_builder/facts/test_labels.py"
T_PARQUET = "tests/triplet_builder/writers/test_parquet.py"
T_EE = "tests/triplet_builder/earthengine/test_provider.py"
T_EE_CLIENT = "tests/triplet_builder/earthengine/test_client.py"
T_STAC = "tests/triplet_builder/sources/test_stac.py"
T_CONFIG = "tests/triplet_builder/test_config.py"
T_WIRE = "tests/triplet_builder/test_remote_wiring.py"
T_SPLITS = "tests/triplet_builder/test_splits.py"
T_EXT = "tests/triplet_builder/text/test_checks_ext.py"
T_SURFACE = "tests/triplet_builder/facts/test_surface.py"
T_KEY = "tests/pipelines/test_task_key.py"
T_PLACE = "tests/pipelines/test_placement.py"
LC_PY = "triplet_builder/text/checks/land_cover.py"
OSM_PY = "triplet_builder/text/checks/osm.py"
NAMES_PY = "triplet_builder/text/checks/names.py"


MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- AlphaEarth de-quantization / orientation
    Mutant(
        AEF,
        "linear q/127 instead of the square",
        "schemas/aef.py",
        "np.sign(qf) * np.square(qf / np.float32(_SCALE))",
        "qf / np.float32(127.0)",
        (T_QUANT,),
    ),
    Mutant(
        AEF,
        "sign dropped",
        "schemas/aef.py",
        "np.sign(qf) * np.square(qf / np.float32(_SCALE))",
        "np.square(qf / np.float32(_SCALE))",
        (T_QUANT,),
    ),
    Mutant(
        AEF, "scale 127 instead of 127.5", "schemas/aef.py", "_SCALE = 127.5", "_SCALE = 127.0", (T_QUANT,)
    ),
    Mutant(AEF, "nodata not zeroed", "schemas/aef.py", "    v[q == NODATA] = 0.0\n", "", (T_QUANT,)),
    Mutant(AEF, "quantize mask dropped", "schemas/aef.py", "    q[bad] = NODATA\n", "", (T_QUANT,)),
    Mutant(
        AEF,
        "row/col swapped in the inverse affine",
        "triplet_builder/embeddings/cog.py",
        "col = np.floor(inv.a * x + inv.b * y + inv.c + EDGE_EPS)\n        row = np.floor(inv.d * x + inv.e * y + inv.f + EDGE_EPS)",
        "row = np.floor(inv.a * x + inv.b * y + inv.c + EDGE_EPS)\n        col = np.floor(inv.d * x + inv.e * y + inv.f + EDGE_EPS)",
        (T_COG,),
    ),
    Mutant(
        AEF,
        "bottom-up rows read top-down",
        "triplet_builder/embeddings/block_cache.py",
        "return self.data[:, (rows - self.r0) // self.step_r, (cols - self.c0) // self.step_c].T",
        "return self.data[:, self.data.shape[1] - 1 - (rows - self.r0) // self.step_r, (cols - self.c0) // self.step_c].T",
        (T_COG,),
    ),
    Mutant(
        AEF,
        "cached lattice: origin not on the points",
        "triplet_builder/embeddings/block_cache.py",
        "return start + (int(values.min()) - start) % step, step",
        "return start, step",
        (T_BLOCKS, T_COG),
    ),
    Mutant(
        AEF,
        "cached lattice: a point off it served from the cache",
        "triplet_builder/embeddings/block_cache.py",
        "            and not ((rows - self.r0) % self.step_r).any()\n",
        "",
        (T_BLOCKS, T_COG),
    ),
    Mutant(
        AEF,
        "blocks read in file order, not the chips' last need",
        "triplet_builder/embeddings/cog.py",
        "groups.sort(key=lambda g: int(order[g[0] : g[1]].max()))",
        "groups.sort(key=lambda g: int(order[g[0] : g[1]].min()) * 0)",
        (T_BLOCKS,),
    ),
    Mutant(
        AEF,
        "north-up grid flipped (positive y size)",
        "triplet_builder/embeddings/cog.py",
        "Affine((right - left) / width, 0.0, left, 0.0, -(top - bottom) / height, top)",
        "Affine((right - left) / width, 0.0, left, 0.0, (top - bottom) / height, bottom)",
        (T_COG,),
    ),
    Mutant(
        AEF,
        "pixel floor off by one",
        "triplet_builder/embeddings/cog.py",
        "row = np.floor(inv.d * x + inv.e * y + inv.f + EDGE_EPS)",
        "row = np.floor(inv.d * x + inv.e * y + inv.f + EDGE_EPS) + 1",
        (T_COG,),
    ),
    # ---------------------------------------------------------------- anchors and positions
    Mutant(
        ANCHORS,
        "anchor at cell corner, not centre",
        "triplet_builder/stages/embed.py",
        "c = (np.arange(grid, dtype=np.float32) + 0.5) / grid",
        "c = np.arange(grid, dtype=np.float32) / grid",
        (T_STAGES, T_EE),
    ),
    Mutant(
        ANCHORS,
        "anchor grid column-major",
        "triplet_builder/stages/embed.py",
        'yy, xx = np.meshgrid(c, c, indexing="ij")',
        'yy, xx = np.meshgrid(c, c, indexing="xy")',
        (T_STAGES, T_EE),
    ),
    Mutant(
        ANCHORS,
        "positions stored (x, y)",
        "triplet_builder/stages/embed.py",
        "np.column_stack([yy.ravel(), xx.ravel()])",
        "np.column_stack([xx.ravel(), yy.ravel()])",
        (T_STAGES, T_EE),
    ),
    Mutant(
        ANCHORS,
        "chip y scaled by width",
        "triplet_builder/geo.py",
        "rows = window.row_off + np.asarray(y, dtype=np.float64) * window.height",
        "rows = window.row_off + np.asarray(y, dtype=np.float64) * window.width",
        (T_GEO, T_PINNED),
    ),
    Mutant(
        ANCHORS,
        "chip x without col_off",
        "triplet_builder/geo.py",
        "cols = window.col_off + np.asarray(x, dtype=np.float64) * window.width",
        "cols = np.asarray(x, dtype=np.float64) * window.width",
        (T_GEO, T_PINNED),
    ),
    Mutant(
        ANCHORS,
        "anchors sliced off by one chip",
        "triplet_builder/stages/embed.py",
        "sl = slice(i * s, (i + 1) * s)",
        "sl = slice(i * s + 1, (i + 1) * s + 1)",
        (T_STAGES, T_EE),
    ),
    # ---------------------------------------------------------------- TLM weights / release placement
    Mutant(
        TLM,
        "release y * hp, not y * (hp - 1)",
        "model/tlm_fields.py",
        "py = pos[..., 0] * (hs if patch_centres else hs - 1)[:, None]",
        "py = pos[..., 0] * hs[:, None]",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "release x * (wp - 1) in ours",
        "model/tlm_fields.py",
        "px = pos[..., 1] * (ws if patch_centres else ws - 1)[:, None]",
        "px = pos[..., 1] * (ws - 1)[:, None]",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "patch centres without + 0.5",
        "model/tlm_fields.py",
        "    off = 0.5 if patch_centres else 0.0\n    hs = host_values(",
        "    off = 0.0\n    hs = host_values(",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "Gaussian sigma not squared",
        "model/tlm_fields.py",
        "ly = -((yy[None, :, None] - py[:, None, :]) ** 2) / (2.0 * sigma * sigma)",
        "ly = -((yy[None, :, None] - py[:, None, :]) ** 2) / (2.0 * sigma)",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "x weights use the y positions",
        "model/tlm_fields.py",
        "lx = -((xx[None, :, None] - px[:, None, :]) ** 2)",
        "lx = -((xx[None, :, None] - py[:, None, :]) ** 2)",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "release second normalisation dropped",
        "model/tlm_fields.py",
        "        return w / (w.sum(-1, keepdim=True) + eps)\n",
        "        return w\n",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "release mask dropped",
        "model/tlm_fields.py",
        "        if keep is not None:\n            w = w * keep[:, None, :].to(w.dtype)\n",
        "",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "eps mask dropped",
        "model/tlm_fields.py",
        "    if keep is not None:\n        ex = ex * keep[:, None, :].to(ex.dtype)\n",
        "",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    Mutant(
        TLM,
        "softmax mask dropped",
        "model/tlm_fields.py",
        '            logits = logits.masked_fill(~keep[:, None, :], float("-inf"))\n',
        "",
        (T_TLM, T_TLM_FUSED, T_RELEASE),
    ),
    # ---------------------------------------------------------------- split assignment
    Mutant(
        SPLIT,
        "test and validation fractions swapped",
        "triplet_builder/stages/georef.py",
        "    if u < test:\n",
        "    if u < validation:\n",
        (T_SPLITS, T_STAGES, T_SPLIT),
    ),
    Mutant(
        SPLIT,
        "validation range not cumulative",
        "triplet_builder/stages/georef.py",
        "if u < test + validation:",
        "if u < validation:",
        (T_SPLITS, T_STAGES, T_SPLIT),
    ),
    Mutant(
        SPLIT,
        "salt ignored",
        "triplet_builder/stages/georef.py",
        'f"{salt}|{block_km}|{block}"',
        'f"{block_km}|{block}"',
        (T_SPLITS, T_STAGES, T_SPLIT),
    ),
    Mutant(
        SPLIT,
        "block of the chip centre only (no straddle guard)",
        "triplet_builder/stages/georef.py",
        "        if len(splits) != 1:\n",
        "        if len(splits) > 2:\n",
        (T_SPLITS, T_STAGES, T_SPLIT),
    ),
    Mutant(
        SPLIT,
        "block hash() instead of sha256",
        "triplet_builder/stages/georef.py",
        'u = int.from_bytes(hashlib.sha256(f"{salt}|{block_km}|{block}".encode()).digest()[:8], "big") / 2**64',
        'u = (hash(f"{salt}|{block_km}|{block}") % 2**32) / 2**32',
        (T_SPLITS, T_STAGES, T_SPLIT),
    ),
    # ---------------------------------------------------------------- CFAR
    Mutant(
        CFAR,
        "dense: nominal, not valid, training count",
        "triplet_builder/facts/cfar.py",
        "alpha = alpha_for(params.pfa, counts)[inverse].reshape(ring_n.shape)",
        "alpha = np.full(ring_n.shape, alpha_for(params.pfa, params.n_train))",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "fast: nominal, not valid, training count",
        "triplet_builder/facts/cfar.py",
        "alpha_for(params.pfa, ring_n) * mean, np.inf",
        "alpha_for(params.pfa, params.n_train) * mean, np.inf",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "dense: >= at the threshold",
        "triplet_builder/facts/cfar.py",
        "hit = ok & (power > thr)",
        "hit = ok & (power >= thr)",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "fast: floor > instead of >=",
        "triplet_builder/facts/cfar.py",
        "cand = ok & (db_band >= params.min_db)",
        "cand = ok & (db_band > params.min_db)",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "fast: window off by one",
        "triplet_builder/facts/cfar.py",
        "y0, y1 = np.clip(ys - r, 0, h), np.clip(ys + r + 1, 0, h)",
        "y0, y1 = np.clip(ys - r, 0, h), np.clip(ys + r, 0, h)",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "fast, by window: guard window shifted",
        "triplet_builder/facts/cfar.py",
        "inner = (slice(None), slice(g, g + params.inner), slice(g, g + params.inner))",
        "inner = (slice(None), slice(g + 1, g + 1 + params.inner), slice(g, g + params.inner))",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "fast, by window: invalid pixels' power counted",
        "triplet_builder/facts/cfar.py",
        "win_p = np.where(win_ok, db_to_linear_power(",
        "win_p = np.where(True, db_to_linear_power(",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "alpha exponent sign",
        "triplet_builder/facts/cfar.py",
        "np.power(pfa, -1.0 / np.maximum(n_a, 1.0))",
        "np.power(pfa, 1.0 / np.maximum(n_a, 1.0))",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "guard ring not subtracted (dense)",
        "triplet_builder/facts/cfar.py",
        "ring_sum = _box_sum(power, params.outer) - _box_sum(power, params.inner)",
        "ring_sum = _box_sum(power, params.outer)",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "min_train_fraction ignored (fast)",
        "triplet_builder/facts/cfar.py",
        "ring_n >= params.min_train_fraction * params.n_train, alpha_for",
        "ring_n >= 0, alpha_for",
        (T_CFAR,),
    ),
    Mutant(
        CFAR,
        "nominal ring size off by one",
        "triplet_builder/facts/cfar.py",
        "return 2 * (self.guard + self.train) + 1",
        "return 2 * (self.guard + self.train)",
        (T_CFAR,),
    ),
    # ---------------------------------------------------------------- chip ids
    Mutant(
        CHIP_ID,
        "hash() instead of sha256",
        "triplet_builder/record.py",
        "return hashlib.sha256(key.encode()).hexdigest()[:16]",
        'return f"{hash(key) & (2**64 - 1):016x}"',
        (T_PINNED,),
    ),
    Mutant(
        CHIP_ID,
        "output size left out of the key",
        "triplet_builder/record.py",
        '|{window.out_width}x{window.out_height}"',
        '"',
        (T_PINNED,),
    ),
    Mutant(
        CHIP_ID,
        "15 hex digits",
        "triplet_builder/record.py",
        "hexdigest()[:16]",
        "hexdigest()[:15]",
        (T_PINNED,),
    ),
    Mutant(
        CHIP_ID,
        "col and row swapped in the key",
        "triplet_builder/record.py",
        "{window.col_off},{window.row_off}",
        "{window.row_off},{window.col_off}",
        (T_PINNED,),
    ),
    # ---------------------------------------------------------------- consistency checker
    Mutant(
        CONSIST,
        "count check: over-count accepted",
        "triplet_builder/text/checks/numbers.py",
        "        if n != true:\n            where",
        "        if n < true:\n            where",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "count check: under-count accepted",
        "triplet_builder/text/checks/numbers.py",
        "        if n != true:\n            where",
        "        if n > true:\n            where",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "percent: 'less than' bound loosened",
        "triplet_builder/text/checks/numbers.py",
        "ok = any(f < n + 1e-9 for f in allowed)",
        "ok = any(f < n + 10 for f in allowed)",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "percent: 'more than' bound loosened",
        "triplet_builder/text/checks/numbers.py",
        "ok = any(f > n - 1e-9 for f in allowed)",
        "ok = any(f > n - 10 for f in allowed)",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "percent: tolerance doubled",
        "triplet_builder/text/checks/numbers.py",
        "ok = any(abs(f - n) <= PERCENT_TOLERANCE + 1e-6 for f in allowed)",
        "ok = any(abs(f - n) <= 2 * PERCENT_TOLERANCE + 1e-6 for f in allowed)",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "cells: water negation ignored",
        "triplet_builder/text/checks/cells.py",
        "ok = w < WATER_PRESENT if negated else w >= (MOSTLY if mostly else WATER_PRESENT)",
        "ok = w >= (MOSTLY if mostly else WATER_PRESENT)",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "cells: target in a wrong cell accepted",
        "triplet_builder/text/checks/cells.py",
        "ok = not inside if negated else inside",
        "ok = not inside if negated else True",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "only: missing cells not reported (under)",
        "triplet_builder/text/checks/cells.py",
        "    missing = sorted(holding - named)\n",
        "    missing: list[int] = []\n",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "detection: fewer boxes than facts accepted (under)",
        "triplet_builder/text/checks/answers.py",
        "    if len(boxes) != len(truth):\n",
        "    if len(boxes) > len(truth):\n",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "detection: None with targets accepted",
        "triplet_builder/text/checks/answers.py",
        'return [] if not truth else [f"answer None',
        'return [] if truth or not truth else [f"answer None',
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "detection: loose IoU",
        "triplet_builder/text/conventions.py",
        "IOU_MATCH = 0.99",
        "IOU_MATCH = 0.5",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "measures: dB tolerance widened",
        "triplet_builder/text/checks/numbers.py",
        "ok = any(abs(v - abs(t)) <= max(rnd, 0.05) + 1e-9 for t in dbs)",
        "ok = any(abs(v - abs(t)) <= max(rnd, 1.0) + 1e-9 for t in dbs)",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "sizes: swapped width x height accepted",
        "triplet_builder/text/checks/numbers.py",
        '    pairs = [(chip["width_m"], chip["height_m"])]\n',
        '    pairs = [(chip["width_m"], chip["height_m"]), (chip["height_m"], chip["width_m"])]\n',
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "acquisition: orbit not checked",
        "triplet_builder/text/checks/acquisition.py",
        '        if m.group("orbit").lower() != (acq.get("orbit_direction") or ""):\n',
        "        if False:\n",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "global negation: water denial accepted",
        "triplet_builder/text/checks/cells.py",
        "                if neg and value >= limit:\n",
        "                if neg and value > 1.0:\n",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "names: unknown place names accepted",
        "triplet_builder/text/checks/acquisition.py",
        "        if not tok[0].isupper() or tok.lower() in ctx.allowed_names:\n",
        "        if True:\n",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "boundary claim without a boundary accepted",
        "triplet_builder/text/checks/acquisition.py",
        "        if not (has_boundary(ctx.facts) or WATER_PRESENT <= w <= 1.0 - WATER_PRESENT):\n",
        "        if False:\n",
        (T_CONS,),
    ),
    Mutant(
        CONSIST,
        "QA: OSM / class count over- or under-count accepted",
        "triplet_builder/text/checks/answers.py",
        "        elif int(a) != count:\n",
        "        elif int(a) < count - 1:\n",
        (T_ANN,),
    ),
    Mutant(
        CONSIST,
        "QA: wrong dominant land cover accepted",
        "triplet_builder/text/checks/answers.py",
        '    if truth is None or a.strip().lower() != truth.lower():\n        out.append(f"answer {a!r} but the dominant',
        '    if truth is None:\n        out.append(f"answer {a!r} but the dominant',
        (T_ANN,),
    ),
    Mutant(
        CONSIST,
        "QA: negatives of classes not looked for accepted",
        "triplet_builder/text/checks/answers.py",
        '    if ctx.facts.get("labels") and key in labelled_classes(ctx.facts):\n        return []\n    return [f',
        "    if True:\n        return []\n    return [f",
        (T_ANN, T_CONS),
    ),
    Mutant(
        CONSIST,
        "ext: land-cover class the map lacks accepted",
        LC_PY,
        '    if float(lc["fractions"].get(m.key) or 0.0) <= 0.0:\n',
        "    if False:\n",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: land-cover percentage unchecked",
        LC_PY,
        "            if not percent_ok(p, allowed):\n",
        "            if False:\n",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: land-cover dominance unchecked",
        LC_PY,
        'if owner is not None and owner.key != lc["dominant"]:',
        "if False:",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: land-cover cell dominance read as presence",
        LC_PY,
        'cell.get("dominant") == owner.key if dom else',
        "True if dom else",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: land-cover map year unchecked",
        LC_PY,
        "    if year and int(year) not in years:\n",
        "    if False:\n",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: land-cover product unchecked",
        LC_PY,
        '        if product != lc["product"]:\n',
        "        if False:\n",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: OSM length tolerance widened (over and under)",
        OSM_PY,
        "if true is not None and lo - tol - 1e-9 <= float(true) <= hi + tol + 1e-9:",
        "if true is not None and lo - 1000 <= float(true) <= hi + 1000:",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: OSM count unchecked",
        OSM_PY,
        'if count and count_value(count.group("count")) != int(feat["count"]):',
        "if False:",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: OSM share unchecked",
        OSM_PY,
        "        if not percent_ok(p, allowed):\n",
        "        if False:\n",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: OSM 'no X' of a mapped feature accepted",
        OSM_PY,
        '        if feat:\n            return [f"{field}: says no {key}',
        '        if False:\n            return [f"{field}: says no {key}',
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: OSM cells unchecked",
        OSM_PY,
        "wrong = sorted(set(ref.cells) - have)",
        "wrong: list[int] = []",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: roads field accepted without OSM roads",
        OSM_PY,
        "    return bool(known & set(ROAD_FEATURES))\n",
        "    return True\n",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: absent class or feature named accepted",
        NAMES_PY,
        "    if n_objects or (is_osm and key in feats):\n",
        "    if True:\n",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: negative outside labelled / queried accepted",
        NAMES_PY,
        "if (is_object and labelled and n_objects == 0) or (queried and key not in feats):",
        "if True:",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: functions not checked",
        NAMES_PY,
        "for p in check_functionality(text, ctx.facts)",
        "for p in check_functionality(None, ctx.facts)",
        (T_EXT,),
    ),
    Mutant(
        CONSIST,
        "ext: scene type priority reversed",
        "triplet_builder/facts/functionality.py",
        "return next((name for name in SCENE_TYPE_PRIORITY if name in derived), None)",
        "return next((name for name in reversed(SCENE_TYPE_PRIORITY) if name in derived), None)",
        (T_EXT,),
    ),
    # ---------------------------------------------------------------- LoRA targets
    Mutant(
        LORA,
        "targets on the whole model (ViT too)",
        "model/lora.py",
        r'return rf"^(?:.*\.)?language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{names})$"',
        r'return rf"^.*\.(?:{names})$"',
        (T_LORA,),
    ),
    Mutant(
        LORA,
        "only the attention projections",
        "model/lora.py",
        r"\.(?:self_attn|mlp)\.(?:{names})$",
        r"\.(?:self_attn)\.(?:{names})$",
        (T_LORA,),
    ),
    Mutant(
        LORA,
        "default targets without the MLP",
        "model/lora.py",
        'DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")',
        'DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")',
        (T_LORA,),
    ),
    Mutant(
        LORA,
        "TLM parameters grouped as base",
        "model/lora.py",
        'if name.startswith("tlm."):',
        'if name.startswith("tlm_"):',
        (T_LORA,),
    ),
    Mutant(
        LORA,
        "checkpointing keeps the vision tower under autograd",
        "model/efficiency.py",
        "        (disable or model.base.gradient_checkpointing_disable)()\n    drop_input_grad_hooks(model)\n",
        "        (disable or model.base.gradient_checkpointing_disable)()\n",
        (T_EFFICIENCY,),
    ),
    Mutant(
        LORA,
        "LoRA input cast left on under autocast",
        "model/efficiency.py",
        "m.cast_input_dtype_enabled = not on",
        "m.cast_input_dtype_enabled = on",
        (T_EFFICIENCY,),
    ),
    # ---------------------------------------------------------------- config wiring of remote sources
    Mutant(
        WIRING,
        "Earth Engine: project dropped",
        "triplet_builder/earthengine/credentials.py",
        "            project=cfg.project,\n",
        "",
        (T_WIRE, T_EE_CLIENT, T_EE),
    ),
    Mutant(
        WIRING,
        "Earth Engine: url dropped",
        "triplet_builder/earthengine/credentials.py",
        "            url=cfg.url,\n",
        "",
        (T_WIRE, T_EE_CLIENT, T_EE),
    ),
    Mutant(
        WIRING,
        "Earth Engine: max_retries dropped",
        "triplet_builder/earthengine/credentials.py",
        "            max_retries=cfg.max_retries,\n",
        "",
        (T_WIRE, T_EE_CLIENT, T_EE),
    ),
    Mutant(
        WIRING,
        "Earth Engine: timeout dropped",
        "triplet_builder/earthengine/credentials.py",
        "            timeout_s=cfg.timeout_s,\n",
        "",
        (T_WIRE, T_EE_CLIENT, T_EE),
    ),
    Mutant(
        WIRING,
        "COG: synthetic flag dropped",
        "triplet_builder/stages/embed.py",
        "            synthetic=cfg.synthetic,\n",
        "",
        (T_WIRE, T_COG),
    ),
    Mutant(
        WIRING,
        "COG: cache dir dropped",
        "triplet_builder/stages/embed.py",
        'cache_dir=None if cache_dir is None else str(Path(cache_dir) / "cog"),',
        "cache_dir=None,",
        (T_WIRE, T_COG),
    ),
    Mutant(
        WIRING,
        "EE embeddings: collection dropped",
        "triplet_builder/stages/embed.py",
        "return EarthEngineEmbeddingProvider(settings, collection=cfg.collection)",
        "return EarthEngineEmbeddingProvider(settings)",
        (T_WIRE, T_EE),
    ),
    Mutant(
        WIRING,
        "STAC: query dropped",
        "triplet_builder/sources/stac.py",
        "                query=src.query,\n",
        "",
        (T_STAC,),
    ),
    Mutant(
        WIRING,
        "STAC: max_items dropped",
        "triplet_builder/sources/stac.py",
        "                max_items=src.max_items,\n",
        "",
        (T_STAC,),
    ),
    Mutant(
        WIRING,
        "STAC: collection not searched",
        "triplet_builder/sources/stac.py",
        "                collections=[src.collection],\n",
        "",
        (T_STAC,),
    ),
    Mutant(
        WIRING,
        "LLM: base_url dropped",
        "triplet_builder/text/llm.py",
        "api_key=key, base_url=self.cfg.base_url, timeout=",
        "api_key=key, timeout=",
        (T_LLM,),
    ),
    Mutant(
        WIRING,
        "LLM: temperature not sent",
        "triplet_builder/text/llm.py",
        '            kw["temperature"] = self.cfg.temperature\n',
        "            pass\n",
        (T_LLM,),
    ),
    Mutant(
        WIRING,
        "LLM: max_tokens not the configured one",
        "triplet_builder/text/llm.py",
        "kw: dict[str, Any] = {self._tokens_param: self.cfg.max_tokens}",
        "kw: dict[str, Any] = {self._tokens_param: 1024}",
        (T_LLM,),
    ),
    # ---------------------------------------------------------------- LLM request payload
    Mutant(
        PAYLOAD,
        "empty image in the vision payload",
        "triplet_builder/text/llm.py",
        'url = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")',
        'url = "data:image/png;base64,"',
        (T_LLM,),
    ),
    Mutant(
        PAYLOAD,
        "image sent without the text",
        "triplet_builder/text/llm.py",
        '                {"type": "text", "text": text},\n',
        "",
        (T_LLM,),
    ),
    Mutant(
        PAYLOAD,
        "system prompt dropped",
        "triplet_builder/text/llm.py",
        'messages: list[dict[str, Any]] = [{"role": "system", "content": self._system}, user]',
        "messages: list[dict[str, Any]] = [user]",
        (T_LLM,),
    ),
    Mutant(
        PAYLOAD,
        "json_schema not strict",
        "triplet_builder/text/llm.py",
        '"schema": _reply_schema(part), "strict": True}',
        '"schema": _reply_schema(part), "strict": False}',
        (T_LLM,),
    ),
    Mutant(
        PAYLOAD,
        "model name not the configured one",
        "triplet_builder/text/llm.py",
        "                        model=cfg.model,\n",
        '                        model="gpt-4o",\n',
        (T_LLM,),
    ),
    # ---------------------------------------------------------------- label matching
    Mutant(
        LABELS,
        "label match by date only",
        "triplet_builder/facts/labels.py",
        'delta = np.abs(self.times - np.datetime64(t0.to_datetime64(), "ns"))',
        'delta = np.abs(self.times.astype("datetime64[D]") - np.datetime64(t0.to_datetime64(), "D"))',
        (T_LABELS,),
    ),
    Mutant(
        LABELS,
        "time tolerance strict <",
        "triplet_builder/facts/labels.py",
        'mask = delta <= np.timedelta64(round(self.time_tolerance_s * 1e9), "ns")',
        'mask = delta < np.timedelta64(round(self.time_tolerance_s * 1e9), "ns")',
        (T_LABELS,),
    ),
    Mutant(
        LABELS,
        "time tolerance in ms",
        "triplet_builder/facts/labels.py",
        "round(self.time_tolerance_s * 1e9)",
        "round(self.time_tolerance_s * 1e6)",
        (T_LABELS,),
    ),
    Mutant(
        LABELS,
        "scene id by prefix",
        "triplet_builder/facts/scene_match.py",
        "    if normalise_id(label_id) in names:\n",
        "    if any(n.startswith(normalise_id(label_id)) for n in names):\n",
        (T_LABELS,),
    ),
    Mutant(
        LABELS,
        "acquisition key without the mode",
        "triplet_builder/facts/scene_match.py",
        "return (info.sensor, info.mode.upper(), info.start)",
        'return (info.sensor, "", info.start)',
        (T_LABELS,),
    ),
    Mutant(
        LABELS,
        "time_tolerance_s not wired from the config",
        "triplet_builder/facts/labels.py",
        "            time_tolerance_s=cfg.time_tolerance_s,\n",
        "",
        (T_LABELS, "tests/triplet_builder/facts/test_labels_config.py"),
    ),
    # ---------------------------------------------------------------- writer schema
    Mutant(
        SCHEMA,
        "year int32",
        "schemas/triplet.py",
        '("year", pa.int16(), False,',
        '("year", pa.int32(), False,',
        (T_PARQUET, T_PINNED),
    ),
    Mutant(
        SCHEMA,
        "acquired without time zone",
        "schemas/triplet.py",
        '("acquired", pa.timestamp("us", tz="UTC"), False,',
        '("acquired", pa.timestamp("us"), False,',
        (T_PARQUET, T_PINNED),
    ),
    Mutant(
        SCHEMA,
        "pixel_size_m float64",
        "schemas/triplet.py",
        '("pixel_size_m", pa.float32(), False,',
        '("pixel_size_m", pa.float64(), False,',
        (T_PARQUET, T_PINNED),
    ),
    Mutant(
        SCHEMA,
        "mode not nullable",
        "schemas/triplet.py",
        '("mode", pa.string(), True,',
        '("mode", pa.string(), False,',
        (T_PARQUET, T_PINNED),
    ),
    Mutant(
        SCHEMA,
        "aef_positions float64",
        "schemas/triplet.py",
        "pa.list_(pa.list_(pa.float32(), 2)),",
        "pa.list_(pa.list_(pa.float64(), 2)),",
        (T_PARQUET, T_PINNED),
    ),
    Mutant(
        HOST,
        "interleaved windows taken as contiguous",
        "model/vision_windows.py",
        "if all(b - a == length for a, b in itertools.pairwise(starts)):",
        "if all(b - a >= length for a, b in itertools.pairwise(starts)):",
        (T_WINDOWS, T_HOST),
    ),
    Mutant(
        HOST,
        "window attention causal",
        "model/vision_windows.py",
        "dropout_p=dropout if module.training else 0.0, is_causal=is_causal, scale=scaling",
        "dropout_p=dropout if module.training else 0.0, is_causal=True, scale=scaling",
        (T_WINDOWS, T_HOST),
    ),
    Mutant(
        HOST,
        "vision rotary positions unmerged",
        "model/host_index.py",
        '"image_position_ids": get_vision_position_ids(grid, merge),',
        '"image_position_ids": get_vision_position_ids(grid, 1),',
        (T_HOST,),
    ),
    Mutant(
        HOST,
        "supervised rows unshifted",
        "model/fused_ce.py",
        "return (labels[:, 1:].reshape(-1) != IGNORE_INDEX).nonzero()[:, 0]",
        "return (labels[:, :-1].reshape(-1) != IGNORE_INDEX).nonzero()[:, 0]",
        (T_HOST,),
    ),
    # ---------------------------------------------------------------- surface facts against the pixels
    Mutant(
        FACTS,
        "water on a tie of dark and not dark",
        "triplet_builder/facts/surface.py",
        'return ndimage.correlate(term, np.ones((3, 3), dtype=np.int8), mode="reflect") > 0',
        'return ndimage.correlate(term, np.ones((3, 3), dtype=np.int8), mode="reflect") >= 0',
        (T_SURFACE,),
    ),
    Mutant(
        FACTS,
        "cells' valid pixels counted over all pixels",
        "triplet_builder/facts/surface.py",
        "n_ok_c = counts[:, 1].sum(axis=(1, 2))",
        "n_ok_c = counts.sum(axis=(1, 2, 3))",
        (T_SURFACE,),
    ),
    # ---------------------------------------------------------------- resume keys
    Mutant(
        RESUME,
        "task key without the pipeline version",
        "pipelines/resume.py",
        '        "pipeline_version": __version__,\n',
        "",
        (T_KEY,),
    ),
    # ---------------------------------------------------------------- task placement
    Mutant(
        PLACE,
        "tasks dealt round-robin",
        "pipelines/placement.py",
        "return {t: min(i * n_workers // max(n, 1), n_workers - 1) for i, t in enumerate(order)}",
        "return {t: i % n_workers for i, t in enumerate(order)}",
        (T_PLACE,),
    ),
    Mutant(
        PLACE,
        "east and west swapped",
        "pipelines/placement.py",
        "return (-math.floor(c[1] / LAT_BAND_DEG), c[0], t)",
        "return (-math.floor(c[1] / LAT_BAND_DEG), -c[0], t)",
        (T_PLACE,),
    ),
)
