"""Train FUSAR-GPT: the two-stage decoupled SFT as ONE loop run with two configurations.

    python -m model.train --config model/configs/tiny.yaml [--data DIR] [--stage 1|2|both] [--resume DIR]

Stage 1 (knowledge injection) trains LoRA + TLM on captions; stage 2 (task execution) trains LoRA only on
QA tasks, continuing stage 1's adapter with the TLM frozen. What trains, on which data and with which
schedule is the stage's `StageConfig` (model/config.py); nothing else differs. Stage 2 records what it
inherits (the stage-1 checkpoint, its config and data fingerprint) in its checkpoints' inherits.json.

Outputs under <output_dir>/<stage>/: checkpoint-<step>/ every save_every steps and final/ at the end
(model/checkpoint.py), metrics.jsonl (step, loss, lr, tokens/s, grad norm, step seconds; eval_loss lines),
loss.png; with `log_samples: true` also samples-rank<r>.jsonl (the sample ids each rank trained on, per step).
`--stop-at STEP` saves a checkpoint at that step and exits without changing the schedule.

Multi-GPU: `torchrun --nproc_per_node N -m model.train ...` (DDP; `distributed: fsdp` in the config for the
7B base; model/distributed.py). The process group is only initialised when WORLD_SIZE > 1 (NCCL on GPU, gloo
on CPU). Each rank reads its own slice of the shards (ShardDataset rank / world_size); the loop pulls samples
from the dataset in the main process (no DataLoader workers) so that the dataset's state_dict is the exact
resume point. A checkpoint holds every rank's data position and RNG states; it resumes on the same number of
ranks, exactly, under DDP and FSDP (tests/model/test_distributed_resume.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model.assemble import autocast, autocast_on, build_model, set_trainable
from model.batching import LengthGrouped, batches
from model.checkpoint import (
    CheckpointError,
    find_latest,
    load_trainer_state,
    load_weights,
    rank_state,
    read_json,
    read_meta,
    save_checkpoint,
)
from model.collate import Collator
from model.config import StageConfig, TrainConfig, load_config
from model.data import ShardDataset
from model.distributed import (
    Runtime,
    all_ranks,
    barrier,
    clip_grad_norm,
    full_optimizer_state,
    gather_objects,
    gathered,
    init_runtime,
    load_full_optimizer_state,
    reduce_metrics,
    trainable_names,
    wrap,
)
from model.host_index import host_index, to_device
from model.tlm import FusarGPT
from model.vision_windows import use_windows_attention

logger = logging.getLogger("model.train")


# == data ===========================================================================================
def make_dataset(
    cfg: TrainConfig, st: StageConfig, data: str, rt: Runtime, *, split: str, train: bool
) -> ShardDataset:
    """The stage's dataset: caption or QA samples of a split, this rank's slice; eval: fixed order, 1 epoch."""
    return ShardDataset(
        data,
        split=split,
        stage=st.data,
        tasks=list(st.tasks) if st.tasks else None,
        image_size=cfg.image_size,
        shuffle_buffer=st.shuffle_buffer if train else 0,
        seed=cfg.seed,
        rank=rt.rank,
        world_size=rt.world_size,
        epochs=(None if st.max_steps else st.epochs) if train else 1,
    )


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


# == the loop =======================================================================================
@dataclass
class StageResult:
    final: Path
    steps: int
    first_loss: float
    last_loss: float
    losses: list[float] = field(default_factory=list)  # every step's training loss of this run
    eval_losses: list[float] = field(default_factory=list)  # every eval loss of this run, in order
    stopped: bool = False  # stopped at --stop-at: `final` is that step's checkpoint, the stage is not done

    @property
    def window(self) -> int:
        """Steps averaged at each end for the summary: a tenth of the run (batch losses are noisy)."""
        return max(1, len(self.losses) // 10)

    def summary(self) -> str:
        """'loss 5.26 -> 2.45 (mean of the first / last 5 steps), eval loss 3.26 -> 0.86'."""
        k = self.window
        text = "no step"
        if self.losses:
            head, tail = self.losses[:k], self.losses[-k:]
            text = f"loss {sum(head) / k:.4f} -> {sum(tail) / k:.4f} (mean of the first / last {k} steps)"
        if self.eval_losses:
            text += f", eval loss {self.eval_losses[0]:.4f} -> {self.eval_losses[-1]:.4f}"
        return text


def stage_dir(cfg: TrainConfig, name: str) -> Path:
    return Path(cfg.output_dir) / name


def eval_loss(
    model: nn.Module, collator: Collator, ds: ShardDataset, st: StageConfig, cfg: TrainConfig, rt: Runtime
) -> float | None:
    """Mean loss over the first eval_batches batches of the eval split (None when the split is empty)."""
    model.eval()
    losses = []
    with torch.no_grad():
        for i, b in enumerate(batches(iter(ds), st.batch_size)):
            if i >= st.eval_batches:
                break
            with autocast(cfg, rt.device):
                losses.append(float(model(**to_device(host_index(model, collator(b)), rt.device)).loss))
    model.train()
    return sum(losses) / len(losses) if losses else None


def _metrics_file(path: Path, resume_step: int) -> Any:
    """metrics.jsonl opened for appending; lines past the resumed step (a crashed run's tail) are dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume_step and path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if _step_of(ln) <= resume_step]
        path.write_text("".join(ln + "\n" for ln in keep))
    elif not resume_step:
        path.write_text("")
    return path.open("a")


def _step_of(line: str) -> float:
    """A metrics line's step; a line torn by a killed process (or blank) counts as past any resume point."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def inherit(cfg: TrainConfig, st: StageConfig, model: FusarGPT, *, loaded: bool) -> dict[str, Any]:
    """Stage 2's record of what it continues: the stage-1 checkpoint (loaded into `model` unless `loaded`),
    its config and data fingerprint, and what stage 2 overrides."""
    src = Path(st.init_from) if st.init_from else stage_dir(cfg, "stage1") / "final"
    if not src.is_dir():
        raise CheckpointError(
            f"stage 2 continues a stage-1 checkpoint but {src} does not exist; "
            "run --stage 1 first or set stage2.init_from"
        )
    if not loaded:
        load_weights(src, model)
    meta = read_meta(src)
    parent = meta["config"].get(meta["stage"], {}) or {}
    mine = st.model_dump(mode="json")
    overrides = {k: [parent.get(k), v] for k, v in mine.items() if parent.get(k) != v}
    logger.info(
        "stage2 inherits LoRA%s from %s (stage-1 step %s, data %s); overrides %s",
        " + TLM (frozen)" if model.tlm is not None else "",
        src,
        meta.get("step"),
        (meta.get("data_fingerprint") or {}).get("digest"),
        {k: f"{a} -> {b}" for k, (a, b) in overrides.items()},
    )
    return {
        "checkpoint": meta["path"],
        "stage": meta["stage"],
        "step": meta.get("step"),
        "config": meta["config"],
        "data_fingerprint": meta.get("data_fingerprint"),
        "overrides": overrides,
    }


def _check_resume(cfg: TrainConfig, name: str, ckpt: Path) -> None:
    """A resume must run the same stage config (else 'exact' is meaningless): one line naming the fields."""
    saved = read_json(ckpt, "config.json")["config"]
    mine = cfg.model_dump(mode="json")
    diff = sorted(k for k in mine[name] if (saved.get(name) or {}).get(k) != mine[name][k])
    diff += sorted(
        k
        for k in ("base", "tlm", "lora", "image_size", "max_length", "seed", "group_by_length")
        if saved.get(k, 0 if k == "group_by_length" else None) != mine[k]  # older checkpoints: no grouping
    )
    if diff:
        raise CheckpointError(
            f"--resume {ckpt}: the config differs in {diff}; resume with the config it was saved with"
        )


def train_stage(
    cfg: TrainConfig,
    name: str,
    model: FusarGPT,
    processor: Any,
    rt: Runtime,
    *,
    data: str,
    resume: Path | None = None,
    inherits: dict[str, Any] | None = None,
    stop_at: int | None = None,
) -> StageResult:
    """Run one stage: the same loop for both, configured by cfg.<name>.

    stop_at: save a checkpoint at that step and return (the schedule still spans the whole stage), so that
    a run can be cut into pieces (a time-limited job) and continued exactly with --resume."""
    st = cfg.stage(name)
    out = stage_dir(cfg, name)
    fsdp = cfg.distributed == "fsdp" and rt.distributed
    counts = set_trainable(model, st.train)
    names = trainable_names(model)  # the optimizer's parameter order, also the checkpoint's under FSDP
    ds = make_dataset(cfg, st, data, rt, split=st.split, train=True)
    total = total_steps(st, ds, rt)
    ddp = wrap(model, fsdp=fsdp, find_unused="tlm" in st.train, rt=rt)
    opt, sched = make_optimizer(ddp if fsdp else model, st, total)
    collator = Collator(processor, max_length=cfg.max_length)
    grouped = (
        LengthGrouped(ds, st.batch_size, cfg.group_by_length, collator.text_length, seed=cfg.seed)
        if cfg.group_by_length
        else None
    )
    position: Any = grouped if grouped is not None else ds  # whose state_dict is the resume point
    step = 0
    if resume is not None:
        _check_resume(cfg, name, resume)
        state = load_trainer_state(
            resume,
            opt,
            sched,
            rank=rt.rank,
            world_size=rt.world_size,
            load_optimizer=lambda sd: load_full_optimizer_state(ddp, opt, sd, names),
        )
        position.load_state_dict(state["data"])
        step = int(state["step"])
        logger.info("%s: resumed from %s at step %d", name, resume, step)
    fingerprint = ds.fingerprint()
    # Eval runs on rank 0 with the bare model (a DDP forward on one rank would wait for the others);
    # FSDP needs every rank for a forward, so there every rank evaluates the same batches.
    eval_model: nn.Module = ddp if fsdp else model
    eval_ds = (
        make_dataset(cfg, st, data, Runtime(rt.device), split=st.eval_split, train=False)
        if st.eval_split and (rt.is_main or fsdp)
        else None
    )
    trainable = [p for p in ddp.parameters() if p.requires_grad]
    if rt.is_main:
        logger.info(
            "%s: %d steps on %s data (%s), training %s (parameters per group %s), lr %g",
            name,
            total,
            st.data,
            ",".join(st.tasks or ()) or "all",
            list(st.train),
            counts,
            st.lr,
        )
    config_json = cfg.model_dump(mode="json")

    def save(path: Path) -> None:
        """Every rank calls this (FSDP gathers weights and optimizer state collectively, and every rank
        hands in its own data position and RNG states); rank 0 writes."""
        ranks = gather_objects(rank_state(position.state_dict()), rt)
        optimizer_state = full_optimizer_state(ddp, opt, names)
        with gathered(ddp):
            if rt.is_main:
                save_checkpoint(
                    path,
                    model,
                    stage=name,
                    step=step,
                    config=config_json,
                    fingerprint=fingerprint,
                    optimizer_state=optimizer_state,
                    scheduler=sched,
                    ranks=ranks,
                    inherits=inherits,
                )

    metrics = _metrics_file(out / "metrics.jsonl", step) if rt.is_main else None
    # which samples each step trained on, per rank: what "the same data order" is checked against
    trace = _metrics_file(out / f"samples-rank{rt.rank}.jsonl", step) if cfg.log_samples else None
    first = last = float("nan")
    losses: list[float] = []
    evals: list[float] = []
    stream = iter(grouped) if grouped is not None else batches(iter(ds), st.batch_size)
    bar = tqdm(total=total, initial=step, desc=name, disable=not rt.is_main, dynamic_ncols=True)
    ddp.train()
    try:
        while step < total:
            t0 = time.perf_counter()
            micro_batches = [b for b in (next(stream, None) for _ in range(st.grad_accum)) if b is not None]
            if not all_ranks(len(micro_batches) == st.grad_accum, rt):
                logger.warning("%s: data exhausted at step %d of %d; ending the stage", name, step, total)
                break  # a partial accumulation is dropped (no gradient was computed yet)
            loss_sum, tokens = 0.0, 0
            for micro, b in enumerate(micro_batches):
                host = host_index(model, collator(b))  # index tensors made here, not on the GPU
                tokens += int(host["attention_mask"].sum())  # from the host copy: no wait on the GPU
                inputs = to_device(host, rt.device)
                last_micro = micro == st.grad_accum - 1
                no_sync = getattr(ddp, "no_sync", None) if not last_micro else None
                with no_sync() if no_sync is not None else contextlib.nullcontext(), autocast(cfg, rt.device):
                    loss = ddp(**inputs).loss / st.grad_accum
                loss.backward()
                loss_sum += float(loss.detach())
            clip = st.grad_clip if st.grad_clip is not None else float("inf")
            grad_norm = clip_grad_norm(ddp, trainable, clip)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss_val, tok_s = reduce_metrics(loss_sum, tokens / max(time.perf_counter() - t0, 1e-9), rt)
            step_s = (
                time.perf_counter() - t0
            )  # this rank's wall time of the step, gradient all-reduce included
            first = loss_val if math.isnan(first) else first
            last = loss_val
            losses.append(loss_val)
            if trace is not None:
                trace.write(
                    json.dumps({"step": step, "ids": [x.id for b in micro_batches for x in b]}) + "\n"
                )
                trace.flush()
            if metrics is not None and (step % st.log_every == 0 or step == total):
                rec = {
                    "step": step,
                    "loss": loss_val,
                    "lr": lr,
                    "tokens_per_s": tok_s,
                    "grad_norm": grad_norm,
                    "step_s": step_s,
                }
                metrics.write(json.dumps(rec) + "\n")
                metrics.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:.0f}")
            if eval_ds is not None and st.eval_every and step % st.eval_every == 0:
                evals += _log_eval(metrics, step, eval_loss(eval_model, collator, eval_ds, st, cfg, rt))
            if ((st.save_every and step % st.save_every == 0) or step == stop_at) and step < total:
                save(out / f"checkpoint-{step:06d}")
            barrier(rt)
            if step == stop_at and step < total:
                break
    finally:
        bar.close()
        if trace is not None:
            trace.close()
    stopped = stop_at is not None and step == stop_at and step < total
    if stopped:
        final = out / f"checkpoint-{step:06d}"
        logger.info("%s: stopped at step %d of %d; continue with --resume %s", name, step, total, final)
    else:
        if eval_ds is not None:
            evals += _log_eval(metrics, step, eval_loss(eval_model, collator, eval_ds, st, cfg, rt))
        final = out / "final"
        save(final)
    if rt.is_main:
        if metrics is not None:
            metrics.close()
        plot_losses(out / "metrics.jsonl", out / "loss.png", title=f"{name}: {st.data}")
        if collator.truncated:
            logger.info(
                "%s: %d samples were truncated to max_length %d", name, collator.truncated, cfg.max_length
            )
    barrier(rt)
    return StageResult(
        final=final,
        steps=step,
        first_loss=first,
        last_loss=last,
        losses=losses,
        eval_losses=evals,
        stopped=stopped,
    )


def _log_eval(metrics: Any, step: int, value: float | None) -> list[float]:
    """Log and record an eval loss; returns [value] (or [] when the split is empty)."""
    if value is None:
        return []
    logger.info("step %d: eval loss %.4f", step, value)
    if metrics is not None:
        metrics.write(json.dumps({"step": step, "eval_loss": value}) + "\n")
        metrics.flush()
    return [value]


def plot_losses(metrics: Path, png: Path, *, title: str) -> Path:
    """Training loss (and eval loss when logged) against the step, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", lw=1)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


# == the command ====================================================================================
def run(
    cfg: TrainConfig, *, stages: tuple[str, ...], resume: str | None = None, stop_at: int | None = None
) -> dict[str, StageResult]:
    """Run the requested stages in order; --resume picks up the newest checkpoint under a folder;
    stop_at ends the first stage that reaches that step with a checkpoint (and runs no later stage)."""
    rt = init_runtime()
    if cfg.data is None:
        raise ValueError("no data: set `data:` in the config or pass --data DIR")
    ckpt = find_latest(resume) if resume else None
    resume_stage = read_json(ckpt, "trainer_state.json")["stage"] if ckpt else None
    model, processor = build_model(cfg, rt.device)
    if autocast_on(cfg, rt.device):  # every forward of this model below runs under autocast
        from model.efficiency import lora_in_autocast

        lora_in_autocast(model)
    use_windows_attention(model)  # the vision tower's window attention batched (model/vision_windows.py)
    if rt.distributed:
        # every rank built the same weights from cfg.seed; from here each rank draws its own dropout masks
        # (same seed everywhere gave ranks with same-shaped batches the same masks); a resume restores these
        torch.manual_seed(cfg.seed + rt.rank)
    results: dict[str, StageResult] = {}
    for name in stages:
        if resume_stage == "stage2" and name == "stage1":
            continue  # already done: its final checkpoint is what stage 2 inherited
        res = ckpt if resume_stage == name else None
        inherits = None
        if name == "stage2":
            if res is not None:
                inherits = read_json(res, "inherits.json")
            else:
                inherits = inherit(cfg, cfg.stage("stage2"), model, loaded="stage1" in results)
        if res is not None:
            load_weights(res, model)
        results[name] = train_stage(
            cfg, name, model, processor, rt, data=cfg.data, resume=res, inherits=inherits, stop_at=stop_at
        )
        if results[name].stopped:
            break
    if rt.distributed:
        dist.destroy_process_group()
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m model.train",
        description=(__doc__ or "").splitlines()[0],
        epilog="Examples (`triplet-builder train ...` is the same command):\n"
        "  python -m model.train --config model/configs/tiny.yaml --data out/demo\n"
        "  triplet-builder train --config model/configs/tiny.yaml --data out/demo --stage 2 --resume out/train/tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML config, e.g. model/configs/tiny.yaml")
    p.add_argument("--data", help="shard folder / glob (overrides the config's data)")
    p.add_argument("--output-dir", help="overrides the config's output_dir")
    p.add_argument("--stage", choices=("1", "2", "both"), default="both")
    p.add_argument("--resume", help="a checkpoint folder, or a run folder (its newest checkpoint)")
    p.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="save a checkpoint at this step of the stage and exit (the schedule is unchanged); "
        "continue later with --resume",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) != 0:
        level = logging.WARNING  # one rank tells the story under torchrun
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, {"data": args.data, "output_dir": args.output_dir})
        wanted = {"1": ("stage1",), "2": ("stage2",), "both": ("stage1", "stage2")}[args.stage]
        stages = tuple(s for s in wanted if getattr(cfg, s) is not None or args.stage != "both")
        if args.stop_at is not None and args.stop_at < 1:
            raise ValueError(f"--stop-at must be a step >= 1, got {args.stop_at}")
        results = run(cfg, stages=stages, resume=args.resume, stop_at=args.stop_at)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in results.items():
        logger.info("%s: %d steps, %s, final checkpoint %s", name, r.steps, r.summary(), r.final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
