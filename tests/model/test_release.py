"""Exact compatibility with the FUSAR-GPT release (kklvyyhadr/FUSAR-GPT tlm.py @ 2079a37).

The reference below is written in this test from the release's published maths (docs: fusar-gpt.md, "Exact
details"): one image, anchors at y * (hp - 1) against patch indices, Gaussian weights normalized over all
anchors (+1e-6), masked, normalized again (+1e-6), the MLP under bf16 autocast, gamma / beta cast to the
tokens' dtype, the fields mixed on the pre-merge grid, resized bilinearly (align_corners False) to the
merged grid, tokens * (1 + gamma) + beta. Our release mode must match it within bf16 rounding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.checkpoint import RELEASE_TLM_WEIGHTS, CheckpointError, load_tlm_config, save_checkpoint
from model.config import parse_config
from model.export_release import save_release
from model.tlm import RELEASE_FORMAT, TLM, TLMConfig

C = 64


def release_modulate(
    film: nn.Sequential, tokens: torch.Tensor, hp: int, wp: int, vectors: Any, positions: Any, mask: Any
) -> torch.Tensor:
    """The release's per-image modulation, from its published maths (bf16 tokens)."""
    h, w = hp // 2, wp // 2
    sigma = 2.0
    with torch.autocast(device_type="cpu", dtype=tokens.dtype):
        gamma, beta = film(vectors.float()).chunk(2, dim=-1)
        gamma, beta = gamma.to(tokens.dtype), beta.to(tokens.dtype)
        yy, xx = torch.meshgrid(
            torch.arange(hp, dtype=torch.float32), torch.arange(wp, dtype=torch.float32), indexing="ij"
        )
        d2 = (positions[:, 0, None] * (hp - 1) - yy.flatten()) ** 2
        d2 = d2 + (positions[:, 1, None] * (wp - 1) - xx.flatten()) ** 2
        wts = torch.exp(-d2 / (2 * sigma**2))  # (S, hp * wp)
        wts = wts / (wts.sum(0, keepdim=True) + 1e-6)
        wts = wts * mask.float().view(-1, 1)
        wts = wts / (wts.sum(0, keepdim=True) + 1e-6)
        g, b = wts.T @ gamma, wts.T @ beta

        def resize(field: torch.Tensor) -> torch.Tensor:
            field = field.view(1, hp, wp, C).permute(0, 3, 1, 2).contiguous()
            field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)
            return field.permute(0, 2, 3, 1).reshape(-1, C)

        g, b = resize(g), resize(b)
        return tokens * (1 + g) + b


def fixed_input(hp: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """bf16 tokens of one hp x hp image and 9 anchors (a 3 x 3 grid reaching the edges, one masked)."""
    g = torch.Generator().manual_seed(3)
    tokens = torch.randn((hp // 2) ** 2, C, generator=g).to(torch.bfloat16)
    vectors = torch.randn(9, 64, generator=g)
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    ticks = torch.tensor([0.0, 0.5, 1.0])
    positions = torch.stack(torch.meshgrid(ticks, ticks, indexing="ij"), -1).reshape(9, 2)
    mask = torch.ones(9, dtype=torch.bool)
    mask[4] = False
    return tokens, vectors, positions, mask


def strong_tlm(cfg: TLMConfig) -> TLM:
    """A TLM whose gamma / beta are of order 1 (so that a misplaced anchor shows far above bf16 rounding)."""
    torch.manual_seed(0)
    tlm = TLM(cfg, C)
    with torch.no_grad():
        tlm.fc2.weight.mul_(30.0)
    return tlm


def test_release_mode_matches_the_release_maths_within_bf16() -> None:
    tokens, vectors, positions, mask = fixed_input()
    ours_tlm = strong_tlm(TLMConfig(format=RELEASE_FORMAT))
    film = nn.Sequential(nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 2 * C))
    film.load_state_dict({k.removeprefix("mlp."): v for k, v in ours_tlm.state_dict().items()})
    with torch.no_grad():
        ref = release_modulate(film, tokens, 12, 12, vectors, positions, mask)
    grid = torch.tensor([[1, 12, 12]])
    ours = ours_tlm(tokens, grid, vectors[None], positions[None], mask[None])
    assert ours.dtype == torch.bfloat16
    scale = float(ref.float().abs().max())
    assert scale > 5  # gamma / beta of order 1: the comparison is not dominated by the tokens alone
    torch.testing.assert_close(ours.float(), ref.float(), rtol=0.02, atol=0.02 * scale / 8)
    # what `patch_centres: false` computed before (anchors at y * hp, not y * (hp - 1)) is far outside it
    old = ours_tlm(tokens, grid, vectors[None], (positions * 12 / 11)[None], mask[None])
    assert float((old.float() - ref.float()).abs().max()) > 10 * 0.02 * scale / 8
    # our default maths (anchors against patch centres at y * hp) is measurably another modulation
    other = strong_tlm(TLMConfig())(tokens, grid, vectors[None], positions[None], mask[None])
    assert float((other.float() - ref.float()).abs().max()) > 10 * 0.02 * scale / 8


def test_release_positions_reach_the_last_patch() -> None:
    """An anchor at y = x = 1 sits ON patch (hp - 1, wp - 1) (the release), not a patch beyond it."""
    from model.tlm import gaussian_weights

    pos = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    w = gaussian_weights(pos, None, 6, 6, 1.0, patch_centres=False, normalization="release")[0]
    raw_last = w[35, 0] / w[35].sum()  # patch (5, 5): distance 0 to the first anchor
    assert float(raw_last) == pytest.approx(1 / (1 + torch.exp(torch.tensor(-50.0 / 2)).item()), rel=1e-6)


def test_release_config_round_trip_is_the_release_file() -> None:
    cfg = TLMConfig.from_json(
        {"format": RELEASE_FORMAT, "sigma": 2.0, "hidden_mult": 4, "image_size": 504, "vec_dim": 64}
    )
    assert cfg.release and not cfg.patch_centres and cfg.normalization == "release"
    assert list(cfg.to_json()) == ["format", "sigma", "hidden_mult", "image_size", "vec_dim"]
    with pytest.raises(ValueError, match="format"):
        TLMConfig.from_json(
            {"format": "other_v9", "sigma": 2.0, "hidden_mult": 4, "image_size": 504, "vec_dim": 64}
        )


def _release_run_config(tmp: Path, release: bool = True) -> Any:
    return parse_config(
        {
            "base": "tiny",
            "image_size": 56,
            "output_dir": str(tmp / "run"),
            "tlm": {"enabled": True, "release": release},
            "stage2": {"data": "qa", "train": ["lora"], "lr": 1e-4},
        }
    )


def _trained_like_checkpoint(tmp: Path, release: bool = True) -> tuple[Path, Any]:
    """A model.train checkpoint whose LoRA and TLM weights are all non-trivial (seeded noise)."""
    from model.assemble import build_model

    cfg = _release_run_config(tmp, release)
    model, _ = build_model(cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name or name.startswith("tlm."):
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    ckpt = save_checkpoint(tmp / "ckpt", model, stage="stage2", step=1, config=cfg.model_dump(mode="json"))
    return ckpt, model


def _greedy(model: Any, processor: Any) -> list[str]:
    import numpy as np
    from PIL import Image

    from model.data import Sample
    from model.predict import generate

    rng = np.random.default_rng(0)
    sample = Sample(
        id="x",
        image=Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)),
        features=rng.normal(size=(4, 64)).astype(np.float32),
        positions=rng.random((4, 2)).astype(np.float32),
        valid=np.ones(4, bool),
        messages=[{"role": "user", "content": "How many ships?"}],
        task="counting",
        split="test",
    )
    return generate(model, processor, [sample], max_new_tokens=6)


def test_export_writes_the_release_layout_and_predict_loads_it(tmp_path: Path) -> None:
    from model.predict import load_for_inference

    ckpt, model = _trained_like_checkpoint(tmp_path)
    out = save_release(ckpt, tmp_path / "release")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["adapter_config.json", "adapter_model.safetensors", "tlm_config.json", RELEASE_TLM_WEIGHTS]
    )
    blob = torch.load(out / RELEASE_TLM_WEIGHTS, map_location="cpu", weights_only=True)
    assert list(blob) == ["film_mlp"] and sorted(blob["film_mlp"]) == [
        "0.bias",
        "0.weight",
        "2.bias",
        "2.weight",
    ]
    assert torch.equal(blob["film_mlp"]["2.weight"], model.tlm.fc2.weight.detach())
    conf = json.loads((out / "tlm_config.json").read_text())
    assert conf == {"format": RELEASE_FORMAT, "sigma": 2.0, "hidden_mult": 4, "image_size": 56, "vec_dim": 64}
    # predict auto-detects the layout (no config.json; the base from the adapter config) and answers the same
    loaded, processor, cfg = load_for_inference(out, device=torch.device("cpu"))
    assert loaded.tlm is not None and loaded.tlm.cfg.release and cfg.base == "tiny"
    original, _, _ = load_for_inference(ckpt, device=torch.device("cpu"))
    for (n1, p1), (n2, p2) in zip(original.named_parameters(), loaded.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert _greedy(loaded, processor) == _greedy(original, processor)


def test_a_hand_written_release_folder_loads(tmp_path: Path) -> None:
    """The release's files as its save_tlm writes them (not by our exporter) load strictly."""
    from model.predict import load_for_inference

    ckpt, _ = _trained_like_checkpoint(tmp_path)
    folder = tmp_path / "by_hand"
    folder.mkdir()
    torch.manual_seed(9)
    film = nn.Sequential(nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 2 * C))
    torch.save({"film_mlp": film.state_dict()}, folder / "vec64_film.pt")
    config = dict(format=RELEASE_FORMAT, sigma=2.0, hidden_mult=4, image_size=56, vec_dim=64)
    (folder / "tlm_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (folder / name).write_bytes((ckpt / name).read_bytes())
    loaded, _, _ = load_for_inference(folder, base="tiny", device=torch.device("cpu"))
    assert loaded.tlm is not None and loaded.tlm.cfg.release
    assert torch.equal(loaded.tlm.fc1.weight, film[0].weight) and torch.equal(
        loaded.tlm.fc2.bias, film[2].bias
    )
    cfg = load_tlm_config(folder)
    assert cfg is not None and cfg.release


def test_export_refuses_a_tlm_trained_with_other_maths(tmp_path: Path) -> None:
    ckpt, _ = _trained_like_checkpoint(tmp_path, release=False)
    with pytest.raises(CheckpointError, match="release: true"):
        save_release(ckpt, tmp_path / "release")


def test_export_command_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from model.export_release import main

    assert main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and err.count("\n") == 1


def test_eval_loads_the_release_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from model.eval.__main__ import main
    from tests.model.data_fixtures import write_dataset

    ckpt, _ = _trained_like_checkpoint(tmp_path)
    release = save_release(ckpt, tmp_path / "release")
    data = write_dataset(tmp_path / "shards", ["test", "train"], rows_per_file=2)
    assert main(["--checkpoint", str(release), "--tasks", "counting"]) == 2  # no config.json names the data
    err = capsys.readouterr().err
    assert "release's layout" in err and "--data" in err and err.count("\n") == 1
    out = tmp_path / "eval"
    args = ["--checkpoint", str(release), "--data", str(data), "--tasks", "counting", "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"TLM", "no TLM", "majority", "anchors_synthetic"}
    assert (
        results["TLM"]["counting"]["n"] == 1 and results["anchors_synthetic"] is True
    )  # the fixture rows say so
