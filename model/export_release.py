"""Export a model.train checkpoint in the FUSAR-GPT release's file layout (`save_release`).

    python -m model.export_release --checkpoint out/train/x/stage2/final --out out/release/x

Writes adapter_model.safetensors + adapter_config.json (peft), vec64_film.pt and tlm_config.json (the
release's `save_tlm` layout), which the release's `TLMModel.from_adapter` and our predict / eval load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from model.checkpoint import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CONFIG_JSON,
    RELEASE_TLM_KEY,
    RELEASE_TLM_WEIGHTS,
    TLM_CONFIG,
    CheckpointError,
    atomic_dir,
    load_tlm_config,
    read_json,
    read_tlm_weights,
)


def save_release(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a model.train checkpoint in the release's layout: the LoRA adapter (peft), vec64_film.pt and
    tlm_config.json exactly as the release's `save_tlm` writes them. Only a TLM trained with the release's
    maths (tlm.release: true) can be exported: any other would compute something else in the release's code.
    """
    src, dst = Path(checkpoint), Path(out)
    if not src.is_dir():
        raise CheckpointError(f"checkpoint folder {src} does not exist")
    cfg = load_tlm_config(src)
    if cfg is None:
        raise CheckpointError(f"{src} has no TLM (tlm_config.json); the release format needs one")
    if not cfg.release:
        raise CheckpointError(
            f"{src / TLM_CONFIG}: this TLM was trained with our maths (patch_centres {cfg.patch_centres}, "
            f"normalization {cfg.normalization}), not the release's; train with `tlm: {{release: true}}` to export"
        )
    sd = read_tlm_weights(src)
    expected = {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    if set(sd) != expected:
        raise CheckpointError(f"{src}: TLM keys {sorted(sd)} are not the TLM MLP's {sorted(expected)}")
    adapter = read_json(src, ADAPTER_CONFIG)
    if not adapter.get("base_model_name_or_path") and (src / CONFIG_JSON).is_file():
        adapter["base_model_name_or_path"] = read_json(src, CONFIG_JSON)["config"].get("base")
    weights_path = src / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        raise CheckpointError(
            f"checkpoint {src} has no {ADAPTER_WEIGHTS}; pass a folder written by model.train"
        )

    def write(tmp: Path) -> None:
        film = {k.removeprefix("mlp."): v.contiguous() for k, v in sd.items()}
        torch.save({RELEASE_TLM_KEY: film}, tmp / RELEASE_TLM_WEIGHTS)
        (tmp / TLM_CONFIG).write_text(json.dumps(cfg.to_json(), indent=2), encoding="utf-8")
        shutil.copyfile(weights_path, tmp / ADAPTER_WEIGHTS)
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n")

    return atomic_dir(dst, write)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model.export_release", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument(
        "--checkpoint", required=True, help="a model.train checkpoint folder trained with tlm.release"
    )
    p.add_argument("--out", required=True, help="the folder to write (replaced if it exists)")
    args = p.parse_args(argv)
    try:
        out = save_release(args.checkpoint, args.out)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
