"""What a planted bug of the mutation check is (`Mutant`), and the names its lists share: the critical
paths and the test files (the lists are gathered by bench/mutants.py). A bug is one entry: an exact
snippet of a file (it must occur there exactly once), its replacement, the tests that must fail with it,
and the critical path of issue #14 it belongs to. `equivalent` (a reason) marks a mutant that cannot
change behaviour; it is expected to survive and reported as such."""

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
