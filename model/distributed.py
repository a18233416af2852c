"""Where the trainer runs and how it talks across ranks: the runtime, the DDP / FSDP wrapper, and the few
collectives the loop needs (stop together, average the logged loss, gather every rank's resume state).

Kept apart from the loop (model/train.py) so that what differs between one process, DDP and FSDP lives in
one place. FSDP here is FSDP1 (`FullyShardedDataParallel`, use_orig_params) with `device_id` set to the
runtime's device, which is what lets it run on CPU with gloo (left unset on a CPU-only machine, torch
raises "FSDP needs a non-CPU accelerator device"). Under FSDP each rank holds a shard of every flat
parameter, so the gradient norm and the optimizer state are collectives too: `clip_grad_norm` and
`full_optimizer_state` / `load_full_optimizer_state` handle them in the bare model's layout, so that a
checkpoint reads the same whichever wrapper wrote it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Runtime:
    """Where this process runs: device, rank, world size, and whether it writes files / logs."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime() -> Runtime:
    """Init torch.distributed only under torchrun (WORLD_SIZE > 1): NCCL on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Runtime(device=device, rank=rank, world_size=world, local_rank=local)


def is_fsdp(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return isinstance(module, FSDP)


def wrap(model: nn.Module, *, fsdp: bool, find_unused: bool, rt: Runtime) -> nn.Module:
    """DDP (or FSDP for a base too big for one device) under torchrun; the bare model otherwise.

    find_unused: DDP's find_unused_parameters (a batch without valid anchors leaves a trainable TLM unused)."""
    if not rt.distributed:
        return model
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        layers = {type(m) for n, m in model.named_modules() if n.endswith("layers.0")}
        return FSDP(
            model,
            use_orig_params=True,  # mixed requires_grad (frozen base, trainable LoRA) needs it
            auto_wrap_policy=ModuleWrapPolicy(layers) if layers else None,
            device_id=rt.device,  # on CPU too: unset, FSDP looks for an accelerator and refuses to start
        )
    from torch.nn.parallel import DistributedDataParallel as DDP

    # device_ids None: the module sits on one device and the loop copies each batch itself (with
    # device_ids DDP would copy every input again, model/host_index.py's host-side tensors included)
    return DDP(model, device_ids=None, find_unused_parameters=find_unused)


def gathered(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """Under FSDP, the full (unsharded) parameters for saving: a collective, so every rank enters it."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    if isinstance(model, FSDP):
        return FSDP.summon_full_params(model, writeback=False)
    return contextlib.nullcontext()


def clip_grad_norm(wrapped: nn.Module, params: Sequence[torch.Tensor], clip: float) -> float:
    """The global gradient norm (clipped to `clip`). Under FSDP each rank holds a shard of the gradients, so
    torch.nn.utils.clip_grad_norm_ would see a local norm and clip every rank differently: FSDP's own
    clip_grad_norm_ reduces the norm over ranks first."""
    if is_fsdp(wrapped):
        return float(wrapped.clip_grad_norm_(clip))  # type: ignore[operator]
    return float(torch.nn.utils.clip_grad_norm_(params, clip))


def trainable_names(model: nn.Module) -> list[str]:
    """The bare model's trainable parameter names in the optimizer's order (model/schedule.make_optimizer)."""
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


def full_optimizer_state(
    wrapped: nn.Module, opt: torch.optim.Optimizer, names: list[str]
) -> dict[str, Any] | None:
    """Under FSDP, the optimizer state gathered whole (onto rank 0's CPU memory from GPUs; onto every rank on
    CPU), indexed like the bare model's optimizer (parameter i = names[i]), so a checkpoint has one layout
    whatever wrote it. A collective: every rank calls it; ranks other than 0 get None. Without FSDP:
    opt.state_dict() (replicated on every rank)."""
    if not is_fsdp(wrapped):
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    # FSDP1 all-gathers every state (exp_avg, then exp_avg_sq) into ONE reused buffer and hands out views of
    # it; only its no-offload path clones them. With cpu_offload on a CPU device `.cpu()` copies nothing, so
    # every moment read as the last one gathered (exp_avg came back as exp_avg_sq): offload from GPUs only.
    compute = cast(FSDP, wrapped).compute_device
    offload = compute is not None and compute.type != "cpu"
    sd = cast(
        "dict[str, Any]",
        get_optimizer_state_dict(
            wrapped, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=offload)
        ),
    )
    if dist.get_rank() != 0:
        return None
    _check_unaliased(sd["state"])
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(sd["state"]) - set(index))
    if unknown:
        raise RuntimeError(f"FSDP optimizer state names {unknown[:3]} are not trainable parameters")
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in sd["param_groups"]]
    return {"state": {index[n]: v for n, v in sd["state"].items()}, "param_groups": groups}


def _check_unaliased(state: dict[str, dict[str, Any]]) -> None:
    """Raise if two gathered optimizer tensors share memory (one would overwrite the other's values: the
    FSDP CPU-offload aliasing above), rather than save a checkpoint that resumes a different run."""
    seen: dict[int, str] = {}
    for name, per_param in state.items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.numel() > 0:
                ptr = value.untyped_storage().data_ptr()
                if ptr in seen:
                    raise RuntimeError(
                        f"gathered optimizer state {name}.{key} shares memory with {seen[ptr]}; not saving it"
                    )
                seen[ptr] = f"{name}.{key}"


def load_full_optimizer_state(
    wrapped: nn.Module, opt: torch.optim.Optimizer, sd: dict[str, Any], names: list[str]
) -> None:
    """Load a checkpoint's optimizer state (bare-model layout, see full_optimizer_state) on every rank:
    FSDP keeps each rank's shard of it; otherwise opt.load_state_dict."""
    if not is_fsdp(wrapped):
        opt.load_state_dict(sd)
        return
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in sd["param_groups"]]
    by_name = {"state": {names[int(i)]: v for i, v in sd["state"].items()}, "param_groups": groups}
    # FSDP's own scatter of the full state into this rank's shards, then the plain load (no zero-gradient
    # optimizer step first, which torch.distributed.checkpoint's set_optimizer_state_dict takes)
    opt.load_state_dict(FSDP.optim_state_dict_to_load(wrapped, opt, by_name))


def gather_objects(obj: Any, rt: Runtime) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank; [obj] in one process."""
    if not rt.distributed:
        return [obj]
    out: list[Any] = [None] * rt.world_size
    dist.all_gather_object(out, obj)
    return out


def reduce_metrics(loss: float, tok_s: float, rt: Runtime) -> tuple[float, float]:
    """Mean loss and summed tokens/s over ranks (what the logs and the progress bar show)."""
    if not rt.distributed:
        return loss, tok_s
    t = torch.tensor([loss, tok_s], device=rt.device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0]) / rt.world_size, float(t[1])


def all_ranks(flag: bool, rt: Runtime) -> bool:
    """True only if `flag` holds on every rank (so all ranks stop together when one runs out of data)."""
    if not rt.distributed:
        return flag
    t = torch.tensor([int(flag)], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


__all__ = [
    "Runtime",
    "all_ranks",
    "barrier",
    "clip_grad_norm",
    "full_optimizer_state",
    "gather_objects",
    "gathered",
    "init_runtime",
    "load_full_optimizer_state",
    "reduce_metrics",
    "trainable_names",
    "wrap",
]
