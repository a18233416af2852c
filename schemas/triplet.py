"""The versioned Arrow schema of a triplet row (and of a reject row): the contract between the
dataset builder (triplet_builder/) and the trainer (model/).

Every column is documented here once; the documentation travels inside each Parquet file as field
metadata and is rendered into the dataset card. Bump SCHEMA_VERSION on any change: minor for an
added nullable column, major for anything a reader of the old version would misread.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.1.0"
AEF_DIM = 64

CAPTION_FIELDS = (
    "terrain",
    "functionality",
    "distribution",
    "layout",
    "boundary",
    "buildings",
    "roads",
    "water",
    "targets",
)
QA_TASKS = ("counting", "localization", "detection", "classification")
SPLITS = ("train", "validation", "test")

_BBOX = pa.struct(
    [
        pa.field("xmin", pa.float64()),
        pa.field("ymin", pa.float64()),
        pa.field("xmax", pa.float64()),
        pa.field("ymax", pa.float64()),
    ]
)
_WINDOW = pa.struct(
    [
        pa.field("col_off", pa.int32()),
        pa.field("row_off", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
    ]
)

# (name, type, nullable, documentation)
_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    (
        "chip_id",
        pa.string(),
        False,
        "Deterministic id: first 16 hex digits of SHA-256(scene_id | native window | output size).",
    ),
    (
        "split",
        pa.string(),
        False,
        "train / validation / test of the spatial blocks (hash of the block id) the footprint covers, all of one split (chips straddling blocks of two splits are rejected: split_guard), never per row.",
    ),
    (
        "image",
        pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())]),
        True,  # nullable only because `datasets` restores Image() solely for a nullable struct; never null
        "The chip as PNG {bytes, path} (decoded by `datasets` as Image). 8-bit, one channel per "
        "polarisation (L for one, RGB-like for two: VV, VH, VV-VH) plus an alpha channel = valid-pixel mask.",
    ),
    (
        "channels",
        pa.list_(pa.string()),
        False,
        "What each PNG colour channel holds, e.g. ['VV'] or ['VV', 'VH', 'VV-VH']; alpha is always the mask.",
    ),
    (
        "stretch_min_db",
        pa.list_(pa.float32()),
        False,
        "Per channel: the dB value mapped to 0. Recover dB as min + code / 255 * (max - min).",
    ),
    ("stretch_max_db", pa.list_(pa.float32()), False, "Per channel: the dB value mapped to 255."),
    (
        "backscatter_db",
        pa.binary(),
        True,
        "Optional (output.backscatter_column; null when off): the chip's full-precision backscatter in dB, "
        "float32 (P, H, W) in `polarisations` order, NaN = invalid, as a zlib-compressed .npy; decode with "
        "schemas.backscatter.decode_backscatter.",
    ),
    ("width", pa.int32(), False, "Chip width in pixels."),
    ("height", pa.int32(), False, "Chip height in pixels."),
    ("pixel_size_m", pa.float32(), False, "Chip pixel size in metres (after resampling to the target)."),
    ("valid_fraction", pa.float32(), False, "Fraction of chip pixels that are valid (not nodata / NaN)."),
    ("scene_id", pa.string(), False, "Id of the source scene (product name where known)."),
    ("source_uris", pa.list_(pa.string()), False, "The files / URIs the chip was read from."),
    ("sensor", pa.string(), False, "e.g. Sentinel-1A."),
    ("mode", pa.string(), True, "Acquisition mode, e.g. IW."),
    ("orbit_direction", pa.string(), True, "ascending / descending."),
    ("polarisations", pa.list_(pa.string()), False, "Polarisations in channel order, e.g. ['VV', 'VH']."),
    ("acquired", pa.timestamp("us", tz="UTC"), False, "Acquisition start time (UTC)."),
    ("year", pa.int16(), False, "Acquisition year; the AlphaEarth layer year."),
    ("backscatter", pa.string(), False, "sigma0 / gamma0 / beta0 / unknown."),
    (
        "source_scale",
        pa.string(),
        False,
        "Scale of the source pixels (db, linear_power, amplitude); converted to dB.",
    ),
    ("window", _WINDOW, False, "Read window in native scene pixels."),
    ("georef_kind", pa.string(), False, "How the scene is georeferenced: affine, gcps or rpcs."),
    ("native_crs", pa.string(), True, "Native CRS of the scene (affine scenes)."),
    (
        "native_transform",
        pa.list_(pa.float64(), 6),
        True,
        "Affine (a, b, c, d, e, f) of the CHIP grid in native_crs (affine scenes); null for GCP / RPC.",
    ),
    ("centre_lon", pa.float64(), False, "Chip centre longitude (WGS84)."),
    ("centre_lat", pa.float64(), False, "Chip centre latitude (WGS84)."),
    ("grid_cell", pa.string(), False, "Major TOM 10 km grid cell of the centre, e.g. '433U_874R'."),
    ("utm_crs", pa.string(), False, "UTM zone of the centre, e.g. EPSG:32631."),
    ("geometry", pa.binary(), False, "Chip footprint polygon, WKB, lon/lat (OGC:CRS84), edges densified."),
    ("bbox", _BBOX, False, "Footprint bounding box (GeoParquet 1.1 covering column)."),
    (
        "facts",
        pa.string(),
        False,
        "The fact sheet (JSON, schemas/facts.schema.json): the only source of truth for the text; labelled "
        "objects carry a vocabulary `class`, and `labels` (when a label file labels the scene) counts them.",
    ),
    ("caption", pa.string(), False, "Stage-1 caption: the non-null caption fields joined."),
    (
        "caption_fields",
        pa.struct([pa.field(f, pa.string()) for f in CAPTION_FIELDS]),
        False,
        "The caption field by field (FUSAR-GEOVL structure, schemas/caption.schema.json).",
    ),
    (
        "qa",
        pa.list_(
            pa.struct(
                [
                    pa.field("task", pa.string()),
                    pa.field("question", pa.string()),
                    pa.field("answer", pa.string()),
                ]
            )
        ),
        False,
        "Stage-2 task QA (counting, localization, detection, classification; schemas/qa.schema.json).",
    ),
    (
        "messages",
        pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])),
        False,
        "The caption and the QA as one chat (role/content), the form TRL and chat templates take.",
    ),
    ("text_generator", pa.string(), False, "Which writer produced the text (e.g. offline/1.0 or an LLM id)."),
    ("prompt_version", pa.string(), False, "Version of the prompt / template set."),
    (
        "aef_codes",
        pa.list_(pa.list_(pa.int8(), AEF_DIM)),
        False,
        "AlphaEarth anchors: S x 64 int8 codes (-128 = invalid). De-quantize v = sign(q) * (q / 127.5)^2.",
    ),
    ("aef_valid", pa.list_(pa.bool_()), False, "Per anchor: has a valid embedding."),
    (
        "aef_positions",
        pa.list_(pa.list_(pa.float32(), 2)),
        False,
        "Per anchor: normalized image-local (y, x) in [0, 1] (FUSAR-GPT `positions`).",
    ),
    ("aef_lonlat", pa.list_(pa.list_(pa.float64(), 2)), False, "Per anchor: (lon, lat)."),
    ("aef_grid", pa.int16(), False, "Anchors form a G x G grid (S = G * G), row-major from the top-left."),
    ("aef_year", pa.int16(), False, "AlphaEarth annual layer used."),
    ("aef_source", pa.string(), False, "Where the embeddings came from (provider and root)."),
    (
        "aef_synthetic",
        pa.bool_(),
        False,
        "True when the embeddings are the demo's SYNTHETIC stand-in, not AlphaEarth.",
    ),
    ("pipeline_version", pa.string(), False, "Version of the builder that wrote the row."),
    ("config_hash", pa.string(), False, "SHA-256 (16 hex) of the resolved region config."),
]

COLUMN_DOCS: dict[str, str] = {name: doc for name, _, _, doc in _COLUMNS}


def triplet_schema() -> pa.Schema:
    """The Arrow schema of a triplet row (GeoParquet metadata is added by the writer)."""
    fields = [
        pa.field(name, typ, nullable=nullable, metadata={"description": doc})
        for name, typ, nullable, doc in _COLUMNS
    ]
    return pa.schema(fields, metadata={"triplet_schema_version": SCHEMA_VERSION})


_REJECT_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("chip_id", pa.string(), False, "Deterministic chip id (as in the shards)."),
    ("scene_id", pa.string(), False, "Source scene."),
    ("window", _WINDOW, False, "Read window in native scene pixels."),
    ("stage", pa.string(), False, "The stage that rejected the chip."),
    (
        "reason",
        pa.string(),
        False,
        "Machine-readable reason (e.g. nodata, featureless, inconsistent_text, duplicate).",
    ),
    ("detail", pa.string(), True, "Human-readable detail."),
    ("geometry", pa.binary(), True, "Footprint (WKB, lon/lat) when it was known at rejection."),
    ("task_id", pa.int32(), False, "Executor task that processed the chip."),
]


def rejects_schema() -> pa.Schema:
    fields = [
        pa.field(name, typ, nullable=nullable, metadata={"description": doc})
        for name, typ, nullable, doc in _REJECT_COLUMNS
    ]
    return pa.schema(fields, metadata={"triplet_schema_version": SCHEMA_VERSION})


# The image-free index of a dataset (metadata.parquet, as Major TOM publishes): one row per kept chip, so
# users filter by place, time, split or content before downloading any image.
_METADATA_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("chip_id", pa.string(), False, "Deterministic chip id (as in the shards)."),
    ("split", pa.string(), False, "train / validation / test."),
    ("grid_cell", pa.string(), False, "Major TOM 10 km grid cell of the centre."),
    ("centre_lon", pa.float64(), False, "Chip centre longitude (WGS84)."),
    ("centre_lat", pa.float64(), False, "Chip centre latitude (WGS84)."),
    ("geometry", pa.binary(), False, "Chip footprint polygon, WKB, lon/lat (OGC:CRS84)."),
    ("bbox", _BBOX, False, "Footprint bounding box (GeoParquet 1.1 covering column)."),
    ("acquired", pa.timestamp(unit="us", tz="UTC"), False, "Acquisition start time (UTC)."),
    ("scene_id", pa.string(), False, "Source scene."),
    ("polarisations", pa.list_(pa.string()), False, "Polarisations in channel order."),
    ("valid_fraction", pa.float32(), False, "Fraction of chip pixels that are valid."),
    ("n_detections", pa.int32(), False, "CFAR bright point targets in the chip (facts)."),
    ("n_objects", pa.int32(), False, "Labelled objects in the chip (facts)."),
    ("file", pa.string(), False, "The shard holding the chip, relative to the dataset root."),
    ("row", pa.int64(), False, "The chip's row index within that shard."),
]


def metadata_schema() -> pa.Schema:
    fields = [
        pa.field(name, typ, nullable=nullable, metadata={"description": doc})
        for name, typ, nullable, doc in _METADATA_COLUMNS
    ]
    return pa.schema(fields, metadata={"triplet_schema_version": SCHEMA_VERSION})


def reject_column_docs() -> dict[str, str]:
    return {name: doc for name, _, _, doc in _REJECT_COLUMNS}
