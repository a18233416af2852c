"""How long a training stage runs and how its learning rate moves: the samples of one epoch, the optimizer
steps of the stage, the warm-up / cosine factor and the AdamW optimizer with its scheduler.

The steps are counted from the shards' small columns (no image is decoded) and agreed on over the ranks, so
that every rank plans the same schedule; the optimizer takes the trainable parameters in name order, the
order a checkpoint stores them in (model/distributed.py `trainable_names`). Split from the loop
(model/train.py), which imports these names from here and re-exports `lr_factor`.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import torch
import torch.distributed as dist
from torch import nn

from model.config import StageConfig
from model.data import ShardDataset
from model.distributed import Runtime


# == steps ==========================================================================================
def samples_per_epoch(ds: ShardDataset) -> int:
    """Samples of the dataset's split / stage / tasks in one epoch over ALL ranks, from the small columns only
    (split, qa): no image is decoded. Counted here, not by a private ShardDataset helper, so the schedule does
    not depend on the reader's internals."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n = 0
    for path in ds.files:
        cols = ["split", "qa"] if ds.stage == "qa" else ["split"]
        table = pq.read_table(path, columns=cols)
        table = table.filter(pc.equal(table.column("split"), ds.split))
        if ds.stage == "caption":
            n += table.num_rows
        elif table.num_rows:
            tasks = pc.list_flatten(table.column("qa").combine_chunks()).field("task")
            n += int(pc.sum(pc.is_in(tasks, value_set=pa.array(list(ds.tasks)))).as_py() or 0)
    return n


def total_steps(st: StageConfig, ds: ShardDataset, rt: Runtime) -> int:
    """Optimizer steps of the stage: max_steps, or every full batch x grad_accum of the epochs (min over ranks,
    so no rank waits for a peer that ran out of data)."""
    if st.max_steps:
        return st.max_steps
    per_rank = samples_per_epoch(ds) // rt.world_size * (st.epochs or 1)
    steps = per_rank // (st.batch_size * st.grad_accum)
    if rt.distributed:
        t = torch.tensor([steps], device=rt.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        steps = int(t.item())
    if steps < 1:
        raise ValueError(
            f"the {st.data} data of split {st.split} holds fewer samples than one step "
            f"(batch_size {st.batch_size} x grad_accum {st.grad_accum}); use more data or smaller batches"
        )
    return steps


# == schedule =======================================================================================
def lr_factor(step: int, total: int, warmup_ratio: float, min_ratio: float) -> float:
    """Linear warm-up over ceil(warmup_ratio * total) steps, then cosine decay to min_ratio at `total`."""
    warm = math.ceil(warmup_ratio * total)
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, st: StageConfig, total: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters (in name order) + warm-up / cosine LambdaLR."""
    params = [p for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=st.lr, betas=st.betas, weight_decay=st.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, st.warmup_ratio, st.min_lr_ratio)
    )
    return opt, sched
