"""Export a model.train checkpoint in the FUSAR-GPT release's file layout (model.checkpoint.save_release).

    python -m model.export_release --checkpoint out/train/x/stage2/final --out out/release/x

Writes adapter_model.safetensors + adapter_config.json (peft), vec64_film.pt and tlm_config.json (the
release's `save_tlm` layout), which the release's `TLMModel.from_adapter` and our predict / eval load.
"""

from __future__ import annotations

import argparse
import sys

from model.checkpoint import CheckpointError, save_release


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
