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

The loop's parts live beside it: the steps and learning-rate schedule in model/schedule.py, metrics.jsonl and
loss.png in model/metrics_log.py, stage 2's inheritance and the resume check in model/stages.py.
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
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model.assemble import autocast, autocast_on, build_model, set_trainable
from model.batching import LengthGrouped, batches
from model.checkpoint import (
    find_latest,
    load_trainer_state,
    load_weights,
    rank_state,
    read_json,
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
from model.metrics_log import log_eval, metrics_file, plot_losses
from model.schedule import lr_factor as lr_factor  # re-exported
from model.schedule import make_optimizer, total_steps
from model.stages import StageResult, check_resume, inherit, stage_dir
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


# == the loop =======================================================================================
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
        check_resume(cfg, name, resume)
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

    metrics = metrics_file(out / "metrics.jsonl", step) if rt.is_main else None
    # which samples each step trained on, per rank: what "the same data order" is checked against
    trace = metrics_file(out / f"samples-rank{rt.rank}.jsonl", step) if cfg.log_samples else None
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
                evals += log_eval(metrics, step, eval_loss(eval_model, collator, eval_ds, st, cfg, rt))
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
            evals += log_eval(metrics, step, eval_loss(eval_model, collator, eval_ds, st, cfg, rt))
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
