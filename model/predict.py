"""Ask a trained FUSAR-GPT one question about one image.

    python -m model.predict --checkpoint DIR --image scene.tif|chip.png --question "..." [--aef anchors.npz]

The image:
- PNG / JPEG (e.g. a chip from the shards): its alpha channel (the shards' valid-pixel mask) is dropped, a
  grey image is replicated to RGB, and it is resized to the checkpoint's image_size (like the shards' reader).
- GeoTIFF (.tif / .tiff): the first band (two bands when there are two or more: co-pol, cross-pol) is read
  with rasterio, already decimated to at most 4 x image_size per side (average resampling) so a whole scene
  does not have to fit in memory; nodata / NaN become invalid. Values are taken as dB when any valid value
  is negative or the file says so, else as linear power (converted with 10 log10); `--scale` forces it.
  Then the shards' FIXED stretch: each polarisation -25..5 dB -> 0..255, with two bands R = first,
  G = second, B = first - second (0..15 dB) - the pipeline's default (`output.stretch.mode: fixed`).
  Invalid pixels are 0. This is deliberately simple: no calibration, no terrain correction, no tiling (ask
  about a chip-sized window for the model's training distribution).

The anchors: an .npz in the release format (features (S, 64) + positions (S, 2) normalized (y, x), or
one (S, 70) array; model.release.read_release_anchors). Without --aef the image gets no anchors and the TLM
is skipped for it (its visual tokens pass unchanged), i.e. what the model does without AlphaEarth.

The checkpoint: a folder written by model.train (its config.json says which base, LoRA and TLM), or a
folder in the release's layout (adapter_model.safetensors + adapter_config.json + vec64_film.pt +
tlm_config.json, see model/checkpoint.py; e.g. written by model.export_release), detected by its lack of
config.json, with --base naming the base model (default: the adapter config's base_model_name_or_path).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model.checkpoint import ADAPTER_CONFIG, CONFIG_JSON, CheckpointError, load_tlm_config, load_weights
from model.collate import Collator
from model.config import TrainConfig, parse_config
from model.data import Sample, resize_image
from model.release import read_release_anchors
from model.tlm import FusarGPT
from schemas.codec import Scale, Stretch, detect_scale, encode_chip, to_db, to_rgb

logger = logging.getLogger("model.predict")

GEOTIFF_SUFFIXES = (".tif", ".tiff")


# == the model ======================================================================================
def load_for_inference(
    checkpoint: str | Path, *, base: str | None = None, device: torch.device | None = None
) -> tuple[FusarGPT, Any, TrainConfig]:
    """(model in eval mode, processor, config) of a trained or release checkpoint, loaded strictly."""
    from model.assemble import build_model  # the same assembly as training, with the checkpoint's TLM

    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint folder {ckpt} does not exist")
    cfg = _config(ckpt, base)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = build_model(cfg, device, tlm_config=load_tlm_config(ckpt))
    load_weights(ckpt, model)
    return model.to(device).eval(), processor, cfg


def _config(ckpt: Path, base: str | None) -> TrainConfig:
    """The training config stored in the checkpoint, or one derived from a release's adapter_config.json."""
    if (ckpt / CONFIG_JSON).is_file():
        raw = json.loads((ckpt / CONFIG_JSON).read_text())["config"]
        if base is not None:
            raw["base"] = base
        return parse_config(raw, str(ckpt / CONFIG_JSON))
    if not (ckpt / ADAPTER_CONFIG).is_file():
        raise CheckpointError(f"{ckpt} has neither config.json (model.train) nor adapter_config.json (peft)")
    ad = json.loads((ckpt / ADAPTER_CONFIG).read_text())
    base = base or ad.get("base_model_name_or_path") or None
    if base is None:
        raise CheckpointError(
            f"{ckpt} is not a model.train checkpoint and its adapter names no base: pass --base "
            "(e.g. Qwen/Qwen2.5-VL-7B-Instruct)"
        )
    targets = ad.get("target_modules")
    tlm = load_tlm_config(ckpt)
    derived: dict[str, Any] = {
        "base": base,
        "lora": {
            "r": ad.get("r", 8),
            "alpha": ad.get("lora_alpha", 32),
            "dropout": ad.get("lora_dropout", 0.05),
        },
        "tlm": {"enabled": tlm is not None, "release": bool(tlm is not None and tlm.release)},
        "image_size": tlm.image_size if tlm is not None else 504,
        "stage2": {"data": "qa", "train": ["lora"], "lr": 1e-5},
    }
    if isinstance(targets, list):
        derived["lora"]["targets"] = targets
    return parse_config(derived, str(ckpt / ADAPTER_CONFIG))


# == the inputs =====================================================================================
def read_image(path: str | Path, *, scale: str = "auto", max_side: int = 2048) -> Image.Image:
    """An RGB image from a PNG / JPEG chip or a SAR GeoTIFF (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist")
    if p.suffix.lower() in GEOTIFF_SUFFIXES:
        return geotiff_to_rgb(p, scale=scale, max_side=max_side)
    with Image.open(p) as im:
        im.load()
        return to_rgb(im)


def geotiff_to_rgb(path: Path, *, scale: str = "auto", max_side: int = 2048) -> Image.Image:
    """Read 1-2 bands (decimated to <= max_side), convert to dB and encode them with the shards' default
    fixed stretch, by the chip codec the builder uses (schemas/codec.py)."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        bands = [1, 2] if src.count >= 2 else [1]
        f = max(1.0, max(src.width, src.height) / max_side)
        shape = (len(bands), max(1, round(src.height / f)), max(1, round(src.width / f)))
        data = src.read(bands, out_shape=shape, masked=True, resampling=Resampling.average).astype(np.float64)
        units = " ".join(str(u or "") for u in src.units).lower() + " " + str(src.tags()).lower()
    values = np.ma.filled(data, np.nan)  # (P, H, W)
    db, valid = to_db(values, _scale_of(values, scale, units, path))
    if not valid.any():
        raise ValueError(f"{path}: every pixel is nodata / NaN / not positive; pick another scene or window")
    names = ["VV", "VH"][: len(bands)]  # channel names only label the codec's output; the stretch is per band
    png = encode_chip(db, valid, names, Stretch()).png
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return to_rgb(im)


def _scale_of(values: np.ndarray, scale: str, units: str, path: Path) -> Scale:
    if scale not in ("auto", *(s.value for s in Scale)):
        raise ValueError(f"--scale must be auto, db, linear_power or amplitude, got {scale!r}")
    if scale != "auto":
        return Scale(scale)
    if not np.isfinite(values).any():
        raise ValueError(f"{path}: every pixel is nodata / NaN; pick another scene or window")
    found = Scale.DB if "db" in units else detect_scale(values)
    logger.info("%s: values read as %s (pass --scale to force)", path.name, found.value)
    return found


def make_sample(
    image: Image.Image,
    question: str,
    *,
    image_size: int,
    aef: str | Path | None = None,
    sample_id: str = "predict",
) -> Sample:
    """A one-question Sample: the image resized like the shards, anchors from an .npz or none."""
    original = image.size
    resized, _, _ = resize_image(image, image_size)
    if aef is not None:
        feats, pos = read_release_anchors(Path(aef), original)
        valid = np.isfinite(feats).all(-1) & (np.abs(feats).sum(-1) > 0)
        feats = np.where(valid[:, None], np.nan_to_num(feats), 0.0).astype(np.float32)
    else:
        feats, pos, valid = np.zeros((0, 64), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, bool)
    return Sample(
        id=sample_id,
        image=resized,
        features=feats,
        positions=pos,
        valid=valid,
        messages=[{"role": "user", "content": question}],
        task="",
        split="predict",
    )


# == generation =====================================================================================
@torch.no_grad()
def generate(
    model: FusarGPT,
    processor: Any,
    samples: list[Sample],
    *,
    max_new_tokens: int = 256,
    max_length: int = 2048,
    use_anchors: bool = True,
) -> list[str]:
    """Greedy answers to the samples' last user turns (`use_anchors=False` withholds every anchor)."""
    batch = Collator(processor, max_length=max_length, generation=True)(samples)
    if not use_anchors:
        batch["aef_mask"] = torch.zeros_like(batch["aef_mask"])
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    tok = getattr(processor, "tokenizer", processor)
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    new = out[:, batch["input_ids"].shape[1] :]
    return [str(t).strip() for t in tok.batch_decode(new, skip_special_tokens=True)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m model.predict",
        description=__doc__.splitlines()[0],
        epilog="Examples (`triplet-builder predict ...` is the same command):\n"
        "  python -m model.predict --checkpoint out/train/tiny/stage2/final --image chip.png "
        '--question "How many ships are there?"\n'
        "  triplet-builder predict --checkpoint out/train/tiny/stage2/final --image scene.tif "
        '--aef anchors.npz --question "Describe the image."',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", required=True, help="a model.train checkpoint folder (or a release folder)"
    )
    p.add_argument("--image", required=True, help="PNG / JPEG chip or SAR GeoTIFF")
    p.add_argument("--question", required=True)
    p.add_argument("--aef", help="anchors .npz (features + positions); without it the TLM is skipped")
    p.add_argument("--base", help="base model (hub id / folder) for a release checkpoint, or to override")
    p.add_argument("--scale", default="auto", choices=("auto", "db", "linear_power", "amplitude"))
    p.add_argument("--max-new-tokens", type=int, default=256)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        image = read_image(args.image, scale=args.scale)  # first: a wrong path fails before the model loads
        model, processor, cfg = load_for_inference(args.checkpoint, base=args.base)
        sample = make_sample(image, args.question, image_size=cfg.image_size, aef=args.aef)
        answer = generate(
            model, processor, [sample], max_new_tokens=args.max_new_tokens, max_length=cfg.max_length
        )[0]
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
