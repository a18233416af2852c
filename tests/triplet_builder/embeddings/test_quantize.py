"""The AlphaEarth int8 code <-> value mapping: exact formula, exact inverse, nodata handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from triplet_builder.embeddings.quantize import NODATA, dequantize, quantize

REAL_WINDOW = (
    Path(__file__).parents[2] / "data/real/alphaearth_geotiff/aef_2024_13N_xjejfvrbm1fbu1ecw_window10x10.tif"
)


def test_nodata_constant() -> None:
    assert NODATA == -128


def test_dequantize_formula_is_signed_square_not_linear() -> None:
    q = np.array([[-127, -64, -1, 0, 1, 64, 127, NODATA]], dtype=np.int8)
    v = dequantize(q)
    assert v.dtype == np.float32
    expected = np.array(
        [
            -((127 / 127.5) ** 2),
            -((64 / 127.5) ** 2),
            -((1 / 127.5) ** 2),
            0,
            (1 / 127.5) ** 2,
            (64 / 127.5) ** 2,
            (127 / 127.5) ** 2,
            0.0,
        ]
    )
    np.testing.assert_allclose(v[0], expected, rtol=1e-6, atol=1e-9)
    assert abs(v[0, 5] - 64 / 127) > 0.2  # the linear q / 127 reading would be far off


def test_round_trip_on_every_code() -> None:
    q = np.arange(-127, 128, dtype=np.int8)
    codes = np.tile(q[:, None], (1, 64))  # (255, 64)
    np.testing.assert_array_equal(quantize(dequantize(codes)), codes)


def test_quantize_masks_invalid_and_nan_pixels_in_every_band() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((4, 3, 64))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    v[1, 2, 17] = np.nan
    valid = np.ones((4, 3), dtype=bool)
    valid[0, 0] = False
    q = quantize(v, valid)
    assert q.dtype == np.int8 and q.shape == (4, 3, 64)
    assert (q[0, 0] == NODATA).all() and (q[1, 2] == NODATA).all()
    others = np.ones((4, 3), dtype=bool)
    others[0, 0] = others[1, 2] = False
    assert (q[others] != NODATA).all()
    with pytest.raises(ValueError, match="valid has shape"):
        quantize(v, np.ones((3, 4), dtype=bool))


def test_quantize_clips_to_the_code_range() -> None:
    q = quantize(np.array([[1.0, -1.0, 2.0, -2.0, 0.0]]))
    np.testing.assert_array_equal(q[0], [127, -127, 127, -127, 0])


def test_dequantize_rejects_float_and_uint8_codes() -> None:
    with pytest.raises(TypeError):
        dequantize(np.zeros((2, 64), dtype=np.float32))
    with pytest.raises(TypeError, match="uint8"):
        dequantize(np.zeros((2, 64), dtype=np.uint8))


def test_real_window_has_unit_norm_vectors() -> None:
    with rasterio.open(REAL_WINDOW) as ds:
        codes = np.moveaxis(ds.read(), 0, -1)  # (10, 10, 64)
    valid = ~(codes == NODATA).any(-1)
    assert valid.all()
    norms = np.linalg.norm(dequantize(codes), axis=-1)
    assert norms.min() > 0.99 and norms.max() < 1.01
