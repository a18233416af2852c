"""encode_chip / decode_chip on real Sentinel-1 dB chips."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from schemas.codec import Stretch, decode_chip, encode_chip
from tests.triplet_builder.writers.records import make_record


def _half_step(lo: float, hi: float) -> float:
    return (hi - lo) / 255.0 / 2.0 + 1e-5  # + float32 rounding of the inputs


def test_single_pol_is_la_with_mask_alpha() -> None:
    rec = make_record(0, "train")  # has a NaN triangle
    assert rec.db is not None and rec.valid is not None
    png, channels, lo, hi = encode_chip(rec.db, rec.valid, ("VV",), Stretch())
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "LA"
        assert im.size == (32, 32)
        px = np.asarray(im)
    assert channels == ["VV"]
    assert lo == [-25.0] and hi == [5.0]
    np.testing.assert_array_equal(px[..., 1] == 255, rec.valid)
    assert (px[..., 0][~rec.valid] == 0).all()
    expected = np.rint(255 * np.clip((rec.db[0].astype(np.float64) + 25.0) / 30.0, 0, 1))
    np.testing.assert_array_equal(px[..., 0][rec.valid], expected[rec.valid])


def test_dual_pol_is_rgba_with_difference_channel() -> None:
    rec = make_record(1, "train", dual_pol=True)
    assert rec.db is not None and rec.valid is not None
    s = Stretch()
    png, channels, lo, hi = encode_chip(rec.db, rec.valid, ("VV", "VH"), s)
    assert channels == ["VV", "VH", "VV-VH"]
    assert lo == [-25.0, -25.0, 0.0] and hi == [5.0, 5.0, 15.0]
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "RGBA"
        px = np.asarray(im).astype(np.float64)
    diff = rec.db[0].astype(np.float64) - rec.db[1].astype(np.float64)
    expected_b = np.rint(255 * np.clip(diff / 15.0, 0, 1))
    np.testing.assert_array_equal(px[..., 2], expected_b)


@pytest.mark.parametrize("mode", ["fixed", "percentile"])
@pytest.mark.parametrize("dual", [False, True])
def test_round_trip_within_half_a_step(mode: str, dual: bool) -> None:
    rec = make_record(3, "train", dual_pol=dual)
    assert rec.db is not None and rec.valid is not None
    pols = rec.scene.polarisations
    # fixed mode: keep values inside the stretch so no clipping happens; percentile: clip to the limits
    db = np.clip(rec.db, -25.0, 5.0) if mode == "fixed" else rec.db
    png, _, lo, hi = encode_chip(db, rec.valid, pols, Stretch(mode=mode))  # type: ignore[arg-type]
    out = decode_chip(png, lo, hi)
    assert out.shape == db.shape and out.dtype == np.float32
    assert np.isnan(out[:, ~rec.valid]).all()
    for c in range(len(pols)):
        ref = np.clip(db[c][rec.valid], lo[c], hi[c])
        err = np.abs(out[c][rec.valid] - ref)
        assert err.max() <= _half_step(lo[c], hi[c])
    if mode == "percentile":  # limits are the valid-pixel percentiles, stored at float32 precision
        p2, p98 = np.percentile(db[0][rec.valid], [2, 98])
        assert lo[0] == pytest.approx(p2, abs=1e-5) and hi[0] == pytest.approx(p98, abs=1e-5)
        assert lo[0] == float(np.float32(lo[0]))


def test_out_of_range_values_clip_and_nan_inside_mask_is_invalid() -> None:
    db = np.array([[[-40.0, 10.0], [-10.0, np.nan]]], dtype=np.float32)  # (1, 2, 2)
    valid = np.ones((2, 2), dtype=bool)
    png, _, lo, hi = encode_chip(db, valid, ["VV"], Stretch())
    with Image.open(io.BytesIO(png)) as im:
        px = np.asarray(im)
    np.testing.assert_array_equal(px[..., 0], [[0, 255], [128, 0]])
    np.testing.assert_array_equal(px[..., 1], [[255, 255], [255, 0]])
    out = decode_chip(png, lo, hi)
    assert out[0, 0, 0] == -25.0 and out[0, 0, 1] == 5.0 and np.isnan(out[0, 1, 1])


def test_bytes_are_deterministic() -> None:
    rec = make_record(5, "train", dual_pol=True)
    assert rec.db is not None and rec.valid is not None
    a = encode_chip(rec.db, rec.valid, ("VV", "VH"), Stretch())
    b = encode_chip(rec.db.copy(), rec.valid.copy(), ("VV", "VH"), Stretch())
    assert a.png == b.png


def test_bad_inputs_are_named_errors() -> None:
    db = np.zeros((3, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="1 or 2 polarisations"):
        encode_chip(db, np.ones((4, 4), bool), ("HH", "HV", "VV"), Stretch())
    with pytest.raises(ValueError, match="valid mask has shape"):
        encode_chip(db[:1], np.ones((3, 4), bool), ("VV",), Stretch())
    with pytest.raises(ValueError, match="max_db > min_db"):
        Stretch(min_db=5.0, max_db=-25.0)
    png, _, lo, hi = encode_chip(db[:1], np.ones((4, 4), bool), ("VV",), Stretch())
    with pytest.raises(ValueError, match="stretch values"):
        decode_chip(png, [*lo, 0.0], [*hi, 1.0])
