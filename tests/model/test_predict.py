"""model.predict on a PNG chip and on REAL SAR GeoTIFFs, the GeoTIFF stretch, and the eval runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from model.assemble import build_model
from model.checkpoint import CheckpointError, save_checkpoint, save_weights
from model.collate import Collator
from model.config import parse_config
from model.predict import geotiff_to_rgb, load_for_inference, main, make_sample, read_image
from tests.model.data_fixtures import png_bytes, write_dataset

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "data" / "real"
DB_TILE = REAL / "spatialist" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif"
OPERA = next((REAL / "opera_rtc_crop").glob("*.tif"))  # gamma0 in linear power, NaN nodata


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) tiny checkpoint whose TLM and LoRA are non-trivial, so anchors change the logits."""
    cfg = parse_config(
        {
            "base": "tiny",
            "image_size": 56,
            "max_length": 256,
            "stage1": {"data": "caption", "train": ["lora", "tlm"], "lr": 1e-4},
        }
    )
    model, _ = build_model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.05)
    out = tmp_path_factory.mktemp("ckpt") / "final"
    return save_checkpoint(out, model, stage="stage1", step=0, config=cfg.model_dump(mode="json"))


@pytest.fixture(scope="module")
def chip_and_anchors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A chip PNG as the shards store it (grey + alpha mask) and a release-format anchors .npz."""
    d = tmp_path_factory.mktemp("chip")
    (d / "chip.png").write_bytes(png_bytes(64, 64, seed=3))
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(16, 64)).astype(np.float32)
    centres = (np.arange(4) + 0.5) / 4
    pos = np.array([[y, x] for y in centres for x in centres], np.float32)
    np.savez(d / "anchors.npz", features=feats, positions=pos)
    return d / "chip.png", d / "anchors.npz"


def test_predict_answers_about_a_png_chip_with_anchors(
    checkpoint: Path, chip_and_anchors: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    png, npz = chip_and_anchors
    args = [
        "--checkpoint",
        str(checkpoint),
        "--image",
        str(png),
        "--question",
        "How many ships?",
        "--max-new-tokens",
        "8",
    ]
    assert main([*args, "--aef", str(npz)]) == 0
    assert main(args) == 0  # no anchors: the TLM is skipped for the image
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2


@pytest.mark.parametrize("tif", [DB_TILE, OPERA], ids=["spatialist_db", "opera_linear"])
def test_predict_answers_about_a_real_geotiff(
    checkpoint: Path, tif: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--image",
                str(tif),
                "--question",
                "Describe.",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_geotiff_db_stretch_is_the_shards_fixed_stretch() -> None:
    img = np.asarray(geotiff_to_rgb(DB_TILE, max_side=10_000))
    with rasterio.open(DB_TILE) as src:
        band = src.read(1, masked=True)
    db = band.filled(np.nan).astype(np.float64)
    expect = np.where(np.isfinite(db), np.rint(255 * np.clip((db + 25) / 30, 0, 1)), 0)
    assert img.shape == (*db.shape, 3) and (img[..., 0] == img[..., 2]).all()  # one band replicated
    assert np.array_equal(img[..., 0], np.nan_to_num(expect).astype(np.uint8))


def test_geotiff_linear_power_is_converted_to_db() -> None:
    img = np.asarray(geotiff_to_rgb(OPERA, max_side=10_000))
    with rasterio.open(OPERA) as src:
        lin = src.read(1).astype(np.float64)
    ok = np.isfinite(lin) & (lin > 0)
    db = 10 * np.log10(lin[ok])
    assert np.array_equal(img[..., 0][ok], np.rint(255 * np.clip((db + 25) / 30, 0, 1)).astype(np.uint8))
    assert (img[..., 0][~np.isfinite(lin)] == 0).all()
    # forcing the wrong scale gives another image: the detection mattered
    assert not np.array_equal(np.asarray(geotiff_to_rgb(OPERA, scale="db", max_side=10_000)), img)


def test_large_scenes_are_decimated_on_read() -> None:
    img = read_image(DB_TILE, max_side=64)
    assert max(img.size) == 64 and img.mode == "RGB"


def test_anchors_reach_the_model_and_none_means_no_modulation(
    checkpoint: Path, chip_and_anchors: tuple[Path, Path]
) -> None:
    png, npz = chip_and_anchors
    model, processor, cfg = load_for_inference(checkpoint, device=torch.device("cpu"))
    image = Image.open(png)
    with_aef = make_sample(image, "Q?", image_size=cfg.image_size, aef=npz)
    without = make_sample(image, "Q?", image_size=cfg.image_size)
    assert with_aef.features.shape == (16, 64) and without.features.shape == (0, 64)
    collate = Collator(processor, generation=True)
    with torch.no_grad():
        a = model(**collate([with_aef])).logits
        b = model(**collate([without])).logits
        masked = collate([with_aef])
        masked["aef_mask"][:] = False
        c = model(**masked).logits
    assert not torch.allclose(a, b)  # the anchors change what the LLM sees
    assert torch.equal(b, c)  # no anchors = every anchor masked: the visual tokens pass unchanged


def test_a_release_folder_needs_a_base(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "base": "tiny",
            "image_size": 56,
            "stage1": {"data": "caption", "train": ["lora", "tlm"], "lr": 1e-4},
        }
    )
    model, _ = build_model(cfg)
    save_weights(model, tmp_path)  # adapter + TLM only, as the release publishes them
    with pytest.raises(CheckpointError, match="pass --base"):
        load_for_inference(tmp_path)
    loaded, _, c = load_for_inference(tmp_path, base="tiny")
    assert c.image_size == 56 and loaded.tlm is not None


def test_eval_scores_with_and_without_tlm(checkpoint: Path, tmp_path: Path) -> None:
    from model.eval.run import EvalSettings, run_eval

    data = write_dataset(tmp_path / "shards", ["test"] * 2 + ["train"], rows_per_file=3)
    settings = EvalSettings(
        data=str(data), split="test", limit=2, max_new_tokens_qa=8, max_new_tokens_caption=8
    )
    results = run_eval(checkpoint, settings, out=tmp_path / "eval")
    assert set(results) == {"TLM", "no TLM", "majority"}
    # the majority baseline answers the one train chip's answers ("1" for counting and for localization)
    assert results["majority"]["counting"] == {"accuracy": 1.0, "n": 1.0}
    assert results["majority"]["localization"]["acc@100"] == 1.0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["majority"] == results["majority"]
    # limit 2: two captions, and the first two QA items (counting, localization) of the first test chip
    assert set(results["TLM"]) == {"caption", "counting", "localization"}
    assert results["TLM"]["caption"]["n"] == 2 and results["TLM"]["counting"]["n"] == 1
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| task | metric | TLM | no TLM | majority |" in report
    preds = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert {p["model"] for p in preds} == {"TLM", "no TLM"} and all(p["reference"] for p in preds)


def test_eval_reads_the_release_format(checkpoint: Path, tmp_path: Path) -> None:
    from model.eval.__main__ import main as eval_main
    from tests.model.data_fixtures import write_release

    jsonl, _ = write_release(tmp_path / "release", n=2)
    out = tmp_path / "eval"
    assert (
        eval_main(
            ["--checkpoint", str(checkpoint), "--data", str(jsonl), "--tasks", "detection", "--out", str(out)]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["TLM"]["detection"]["n"] == 2 and set(results["TLM"]) == {"detection"}


def test_eval_says_synthetic_anchors_mean_nothing(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows with aef_synthetic = true: the run prints the warning line and flags results.json and report.md."""
    import pyarrow.parquet as pq

    from model.eval.__main__ import main as eval_main
    from model.eval.run import SYNTHETIC_ANCHORS_WARNING, synthetic_anchors

    data = write_dataset(
        tmp_path / "shards", ["test", "train"], rows_per_file=2
    )  # fixture rows are synthetic
    out = tmp_path / "eval"
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--tasks", "counting", "--out", str(out)]
    assert eval_main([*args, "--limit", "1"]) == 0
    assert SYNTHETIC_ANCHORS_WARNING in capsys.readouterr().out.splitlines()
    assert json.loads((out / "results.json").read_text())["anchors_synthetic"] is True
    assert SYNTHETIC_ANCHORS_WARNING in (out / "report.md").read_text()
    # the same rows marked real: no warning
    (shard,) = (data / "data").glob("*.parquet")
    table = pq.read_table(shard)
    i = table.schema.get_field_index("aef_synthetic")
    pq.write_table(table.set_column(i, table.schema.field(i), [[False] * table.num_rows]), shard)
    assert not synthetic_anchors(str(data))
    (data / "manifest.json").write_text(json.dumps({"synthetic_embeddings": True}))
    assert synthetic_anchors(str(data))
