"""Checkpoints of the FUSAR-GPT trainer: save atomically, load strictly, resume exactly.

A checkpoint is one folder:

    adapter_model.safetensors   the LoRA adapter (peft layout: load with peft's PeftModel.from_pretrained
    adapter_config.json         on the same base, or with `load_weights` here)
    tlm.safetensors             the TLM MLP (keys mlp.0.*, mlp.2.*: the release's names)
    tlm_config.json             {sigma, hidden_mult, image_size, vec_dim, ...} (TLMConfig.to_json)
    trainer_state.safetensors   optimizer tensors (Adam moments, steps) and torch / CUDA RNG states
    trainer_state.json          step, scheduler, optimizer param groups, data position (ShardDataset.state_dict),
                                python / numpy RNG, the stage name; under torchrun the world size and EVERY
                                rank's data position and RNG states (`ranks`; tensors as rank<r>.rng.*)
    config.json                 the whole TrainConfig and the stage's name: the config travels with the weights
    data_fingerprint.json       ShardDataset.fingerprint() of the data that trained it
    inherits.json               stage 2 only: the stage-1 checkpoint it continued, its config and fingerprint

Folders are written to a hidden temporary sibling and renamed into place, so a crash leaves either the old
checkpoint or the new one, never half of one. Loading is strict: a missing, unexpected or mis-shaped key is
a one-line `CheckpointError` naming the file and what to do.

The release's layout (kklvyyhadr/FUSAR-GPT tlm.py, `save_tlm`): the LoRA adapter as above, `vec64_film.pt`
= torch.save({"film_mlp": state dict of the Sequential}, keys 0.weight, 0.bias, 2.weight, 2.bias) and
`tlm_config.json` = {format: "tlm_original_train_patch_resize_v1", sigma, hidden_mult, image_size, vec_dim}.
`load_weights` reads it as well (torch.load with weights_only=True; the keys map 0.* -> mlp.0.*), and a
config with the release's `format` selects the release's exact maths (model.tlm). model.export_release writes
it (`python -m model.export_release --checkpoint DIR --out DIR`); predict and eval then load the folder with
--base naming the base model (default: the adapter config's base_model_name_or_path).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from model.tlm import FusarGPT, TLMConfig

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TLM_WEIGHTS = "tlm.safetensors"
RELEASE_TLM_WEIGHTS = "vec64_film.pt"  # the release's TLM file: {"film_mlp": Sequential state dict}
RELEASE_TLM_KEY = "film_mlp"
TLM_CONFIG = "tlm_config.json"
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
CONFIG_JSON = "config.json"
FINGERPRINT_JSON = "data_fingerprint.json"
INHERITS_JSON = "inherits.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model or is incomplete (one line, actionable)."""


# == writing =========================================================================================
def atomic_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Run write(tmp) on a fresh hidden sibling folder, then rename it to `final` (replacing an old one)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        _fsync_dir(tmp)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    """Flush every file so the rename publishes complete files (matters on a crash, not in tests)."""
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _write_json(path: Path, obj: Any, *, sort_keys: bool = True) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable in a checkpoint")


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def tlm_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    tlm = getattr(model, "tlm", None)
    return {} if tlm is None else _contiguous(tlm.state_dict())


def adapter_config(model: nn.Module) -> dict[str, Any]:
    """The peft LoraConfig of the model as peft writes adapter_config.json (base_model_name_or_path included)."""
    for module in model.modules():
        cfgs = getattr(module, "peft_config", None)
        if isinstance(cfgs, dict) and cfgs:
            cfg = next(iter(cfgs.values()))
            d = cfg.to_dict()
            return {k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}
    raise CheckpointError("the model has no peft LoRA adapter (apply_lora was not called); nothing to save")


def save_weights(model: FusarGPT, folder: Path) -> None:
    """The adapter (peft layout) and the TLM (weights + JSON config) into `folder`."""
    from model.lora import lora_state_dict

    save_file(_contiguous(lora_state_dict(model)), str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    _write_json(folder / ADAPTER_CONFIG, adapter_config(model))
    tlm = getattr(model, "tlm", None)
    if tlm is not None:
        save_file(tlm_state_dict(model), str(folder / TLM_WEIGHTS), metadata={"format": "pt"})
        _write_json(folder / TLM_CONFIG, tlm.cfg.to_json(), sort_keys=False)  # the release's keys first


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON part, tensor part) of python / numpy / torch / CUDA RNG states."""
    py = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    js = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return js, tensors


def set_rng_state(js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    py = js["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = js["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


class RankState(TypedDict):
    """One rank's share of the trainer state: its data position and its RNG states (JSON and tensor parts)."""

    data: dict[str, Any] | None
    rng: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]


def rank_state(data_state: dict[str, Any] | None) -> RankState:
    """This process's data position (given) and RNG states, to gather from every rank before a save."""
    js, tensors = rng_state()
    return {"data": data_state, "rng": js, "rng_tensors": tensors}


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """optimizer.state_dict() -> (JSON part: param groups + scalar state, tensor part: optim.<i>.<key>)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                # a copy, not a view: FSDP's gathered state holds views into one flat buffer
                tensors[f"optim.{idx}.{key}"] = (
                    value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
                )
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}, tensors


def _join_optimizer(js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, scalars in js["scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    # JSON turned tuples (AdamW betas) into lists; give torch back what it wrote
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in js["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | Path,
    model: FusarGPT,
    *,
    stage: str,
    step: int,
    config: dict[str, Any],
    fingerprint: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    optimizer_state: dict[str, Any] | None = None,
    scheduler: Any | None = None,
    data_state: dict[str, Any] | None = None,
    ranks: list[RankState] | None = None,
    inherits: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a full checkpoint atomically (see the module docstring); returns its folder.

    `model` is the unwrapped FusarGPT (not the DDP wrapper). The optimizer state is `optimizer_state` when
    given (FSDP gathers it: model.distributed.full_optimizer_state), else `optimizer.state_dict()`.
    ranks: under torchrun, every rank's data position and RNG states (rank_state() on each rank, gathered in
    rank order): each rank resumes its own stream and its own dropout draws. Without it, this process's.
    """
    ranks = ranks if ranks is not None else [rank_state(data_state)]
    if optimizer_state is None and optimizer is not None:
        optimizer_state = optimizer.state_dict()
    opt_js, opt_tensors = _split_optimizer(optimizer_state) if optimizer_state is not None else ({}, {})
    rng_tensors = {f"rank{r}.{k}": v for r, rs in enumerate(ranks) for k, v in rs["rng_tensors"].items()}
    # rank 0's also under the single-process names, as before (copies: safetensors refuses shared memory)
    rng_tensors.update({k: v.clone() for k, v in ranks[0]["rng_tensors"].items()})
    state = {
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "step": int(step),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "optimizer": opt_js or None,
        "data": ranks[0]["data"],
        "rng": ranks[0]["rng"],
        "world_size": len(ranks),
        "ranks": [{"data": rs["data"], "rng": rs["rng"]} for rs in ranks],
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        save_weights(model, tmp)
        save_file({**opt_tensors, **rng_tensors}, str(tmp / STATE_TENSORS), metadata={"format": "pt"})
        _write_json(tmp / STATE_JSON, state)
        _write_json(tmp / CONFIG_JSON, {"stage": stage, "config": config})
        _write_json(tmp / FINGERPRINT_JSON, fingerprint or {})
        if inherits is not None:
            _write_json(tmp / INHERITS_JSON, inherits)

    out = atomic_dir(Path(path), write)
    logger.info("saved %s checkpoint at step %d to %s", stage, step, out)
    return out


# == reading =========================================================================================
def _require(folder: Path, name: str) -> Path:
    p = folder / name
    if not p.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {name}; pass a folder written by model.train")
    return p


def read_json(folder: str | Path, name: str) -> Any:
    return json.loads(_require(Path(folder), name).read_text())


def read_meta(folder: str | Path) -> dict[str, Any]:
    """config.json, data_fingerprint.json, inherits.json (when present) and the step / stage of a checkpoint."""
    f = Path(folder)
    meta: dict[str, Any] = {"path": str(f.resolve())}
    meta.update(read_json(f, CONFIG_JSON))
    meta["data_fingerprint"] = read_json(f, FINGERPRINT_JSON) if (f / FINGERPRINT_JSON).is_file() else None
    meta["inherits"] = read_json(f, INHERITS_JSON) if (f / INHERITS_JSON).is_file() else None
    if (f / STATE_JSON).is_file():
        st = read_json(f, STATE_JSON)
        meta["step"] = st["step"]
    return meta


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path} holds a {type(sd).__name__}, not a state dict of tensors")
    if set(sd) == {RELEASE_TLM_KEY}:  # the release: {"film_mlp": {0.weight, 0.bias, 2.weight, 2.bias}}
        inner = sd[RELEASE_TLM_KEY]
        if not isinstance(inner, dict):
            raise CheckpointError(
                f"{path}: {RELEASE_TLM_KEY} holds a {type(inner).__name__}, not a state dict"
            )
        return {f"mlp.{k}": v for k, v in inner.items()}
    return sd


def _tlm_file(folder: Path) -> Path | None:
    for name in (TLM_WEIGHTS, RELEASE_TLM_WEIGHTS, "tlm.pt", "tlm.bin", "tlm.pth"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_tlm_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's TLM state dict (keys mlp.*), from tlm.safetensors or the release's vec64_film.pt."""
    path = _tlm_file(Path(folder))
    if path is None:
        raise CheckpointError(
            f"checkpoint {folder} has no TLM weights ({TLM_WEIGHTS} or {RELEASE_TLM_WEIGHTS})"
        )
    return _load_tensors(path)


def load_tlm_config(folder: str | Path) -> TLMConfig | None:
    """The checkpoint's TLMConfig, or None when it has no TLM (a no-AlphaEarth baseline)."""
    p = Path(folder) / TLM_CONFIG
    if not p.is_file():
        return None
    try:
        return TLMConfig.from_json(json.loads(p.read_text()))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{p}: {e}") from None


def strict_load(module: nn.Module, sd: dict[str, torch.Tensor], source: Path) -> None:
    """load_state_dict(strict=True) with shapes checked first; any mismatch is one CheckpointError line."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} shape mismatch(es) e.g. {k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
            )
        raise CheckpointError(
            f"{source} does not fit this model: {'; '.join(parts)}; use the base / TLM / LoRA config it was saved with"
        )
    module.load_state_dict(sd, strict=True)


def load_weights(folder: str | Path, model: FusarGPT, *, tlm: bool = True) -> None:
    """Load the checkpoint's LoRA adapter and (if `tlm` and the model has one) its TLM, strictly.

    A model with a TLM and a checkpoint without one (or the reverse) is an error: train and load the same
    kind of model (use --no-tlm style configs for the baseline)."""
    from model.lora import load_lora_state_dict

    f = Path(folder)
    if not f.is_dir():
        raise CheckpointError(f"checkpoint folder {f} does not exist")
    path = _require(f, ADAPTER_WEIGHTS)
    try:
        load_lora_state_dict(model, load_file(str(path)), strict=True)
    except CheckpointError:
        raise
    except (KeyError, RuntimeError, ValueError) as e:
        detail = str(e.args[0]) if e.args else type(e).__name__
        raise CheckpointError(f"{path} does not fit this model's LoRA: {detail.splitlines()[0]}") from None
    module = getattr(model, "tlm", None)
    tlm_path = _tlm_file(f)
    if not tlm:
        return
    if module is None and tlm_path is not None:
        raise CheckpointError(f"{tlm_path} holds a TLM but the model has none; enable tlm in the config")
    if module is not None:
        if tlm_path is None:
            raise CheckpointError(
                f"checkpoint {f} has no TLM weights but the model has a TLM; set tlm.enabled false"
            )
        strict_load(module, _load_tensors(tlm_path), tlm_path)


def load_trainer_state(
    folder: str | Path,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    load_optimizer: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Restore optimizer, scheduler and this rank's RNG states; return trainer_state.json with `data` set to
    this rank's data position (step, data, stage, ...).

    load_optimizer: how to load the optimizer state dict (FSDP: model.distributed.load_full_optimizer_state);
    default optimizer.load_state_dict. A checkpoint resumes only on the world size that wrote it (each rank's
    data stream is a slice that depends on it)."""
    f = Path(folder)
    state: dict[str, Any] = read_json(f, STATE_JSON)
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{f / STATE_JSON}: format_version {state.get('format_version')} != {FORMAT_VERSION}"
        )
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        raise CheckpointError(
            f"checkpoint {f} was written by {saved_world} rank(s) and this run has {world_size}; resume with "
            f"torchrun --nproc_per_node {saved_world} (each rank resumes its own data stream)"
        )
    tensors = load_file(str(_require(f, STATE_TENSORS)))
    if "ranks" in state:  # this rank's position and RNG under the names the single-process code reads
        mine = state["ranks"][rank]
        state["data"], state["rng"] = mine["data"], mine["rng"]
        prefix = f"rank{rank}."
        optim = {k: v for k, v in tensors.items() if k.startswith("optim.")}
        tensors = optim | {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if optimizer is not None:
        if not state.get("optimizer"):
            raise CheckpointError(f"checkpoint {f} has no optimizer state; it cannot resume training")
        sd = _join_optimizer(state["optimizer"], tensors)
        groups = [len(g["params"]) for g in optimizer.state_dict()["param_groups"]]
        saved = [len(g["params"]) for g in sd["param_groups"]]
        if groups != saved:
            raise CheckpointError(
                f"checkpoint {f}: optimizer has {saved} parameters per group, this run {groups}; "
                "resume with the same config (same trainable groups)"
            )
        (load_optimizer or optimizer.load_state_dict)(sd)
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"], tensors)
    return state


def find_latest(folder: str | Path) -> Path:
    """A checkpoint folder itself, or the newest checkpoint under a run / stage folder."""
    f = Path(folder)
    if (f / STATE_JSON).is_file():
        return f
    found = [p.parent for p in f.glob("**/" + STATE_JSON) if not p.parent.name.startswith(".")]
    if not found:
        raise CheckpointError(f"no checkpoint (trainer_state.json) under {f}; pass a checkpoint folder")

    def key(p: Path) -> tuple[int, int]:
        st = json.loads((p / STATE_JSON).read_text())
        return (1 if st["stage"] == "stage2" else 0, int(st["step"]))

    return max(found, key=key)


__all__ = [
    "CheckpointError",
    "RankState",
    "atomic_dir",
    "find_latest",
    "load_tlm_config",
    "load_trainer_state",
    "load_weights",
    "rank_state",
    "read_meta",
    "read_tlm_weights",
    "save_checkpoint",
    "save_weights",
    "strict_load",
]
