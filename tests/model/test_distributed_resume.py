"""Exact resume under torchrun on CPU (2 gloo ranks): an unbroken run and the same run cut into pieces (stopped
cleanly with --stop-at, then SIGKILLed right after a checkpoint, then resumed) end with the same weights, the
same optimizer state and the same samples on each rank, with length grouping off and on; and the same for FSDP.

Each piece is a real `torchrun --nproc_per_node 2 -m model.train` subprocess on tiny models built in code.
Bitwise equality is expected: on CPU every op here is deterministic and a gloo all-reduce of two ranks adds the
same two numbers in either order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench.train_ddp_scaling import stage1_command
from tests.model.data_fixtures import write_dataset

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve train chips in row groups of 2: each rank reads three row groups per epoch."""
    return write_dataset(tmp_path_factory.mktemp("shards"), ["train"] * 12, row_group_rows=2)


def write_config(path: Path, *, group_by_length: int, distributed: str = "ddp") -> Path:
    """Stage 1 of 6 steps, batch 2 x grad-accum 2 per rank, LoRA dropout on (per-rank RNG matters), a shuffle
    buffer (per-rank data state matters), a checkpoint every 2 steps, the per-rank sample trace on."""
    path.write_text(
        "base: tiny\nimage_size: 56\nmax_length: 256\nlog_samples: true\n"
        f"group_by_length: {group_by_length}\ndistributed: {distributed}\n"
        "lora: {dropout: 0.1}\n"
        f"stage1: {{data: caption, train: [lora, tlm], max_steps: {STEPS}, lr: 1.0e-3, batch_size: 2, "
        "grad_accum: 2, shuffle_buffer: 4, save_every: 2, eval_split: null}\n"
    )
    return path


def torchrun(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return stage1_command(config, data, out, 2, *extra)


def run_ok(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def children(pid: int) -> list[int]:
    """Direct children of `pid` (torchrun starts each rank in its own session, so killing torchrun's process
    group would leave the ranks running)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def run_killed_after(cmd: list[str], checkpoint: Path) -> None:
    """Start the run, wait until `checkpoint` is published (the atomic rename), then SIGKILL every rank and
    torchrun: no clean shutdown, whatever the ranks were doing."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (checkpoint / "trainer_state.json").is_file():
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended before writing {checkpoint}: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {checkpoint} within 300 s")
        time.sleep(0.01)
    for pid in children(proc.pid):
        os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait()


def state(stage: Path) -> dict[str, torch.Tensor]:
    """The final weights (adapter + TLM) and optimizer tensors of a stage folder."""
    final = stage / "final"
    tensors = {f"adapter.{k}": v for k, v in load_file(str(final / "adapter_model.safetensors")).items()}
    tensors |= {f"tlm.{k}": v for k, v in load_file(str(final / "tlm.safetensors")).items()}
    optim = load_file(str(final / "trainer_state.safetensors"))
    return tensors | {k: v for k, v in optim.items() if k.startswith("optim.")}


def samples(stage: Path, rank: int) -> list[dict]:
    return [json.loads(x) for x in (stage / f"samples-rank{rank}.jsonl").read_text().splitlines()]


def losses(stage: Path) -> list[float]:
    lines = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


def assert_same_run(full: Path, pieces: Path) -> None:
    a, b = state(full), state(pieces)
    assert a.keys() == b.keys() and len(a) > 20
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    for rank in (0, 1):
        assert samples(pieces, rank) == samples(full, rank)
        assert [r["step"] for r in samples(full, rank)] == list(range(1, STEPS + 1))
    assert losses(pieces) == losses(full)
    # the two ranks read different samples (else per-rank data state would go untested)
    assert samples(full, 0) != samples(full, 1)


def cut_into_pieces(config: Path, shards: Path, out: Path) -> None:
    """Stop cleanly at step 2; resume and SIGKILL right after checkpoint 4 is written; resume to the end."""
    stage = out / "stage1"
    err = run_ok(torchrun(config, shards, out, "--stop-at", "2"))
    assert "stopped at step 2 of 6" in err
    assert (stage / "checkpoint-000002").is_dir() and not (stage / "final").exists()
    run_killed_after(torchrun(config, shards, out, "--resume", str(stage)), stage / "checkpoint-000004")
    assert not (stage / "final").exists(), "the kill came after the run had finished: nothing was resumed"
    err = run_ok(torchrun(config, shards, out, "--resume", str(stage)))
    assert "resumed from" in err and "at step 4" in err


@pytest.fixture(scope="module")
def unbroken(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """Unbroken runs, by (distributed, group_by_length), each made once for the module; returns their folders."""
    done: dict[tuple[str, int], Path] = {}

    class Runs(dict):  # type: ignore[type-arg]
        def __missing__(self, key: tuple[str, int]) -> Path:
            out = tmp_path_factory.mktemp(f"full-{key[0]}-{key[1]}")
            config = write_config(out / "config.yaml", group_by_length=key[1], distributed=key[0])
            run_ok(torchrun(config, shards, out))
            self[key] = out / "stage1"
            return self[key]

    return Runs(done)


@pytest.mark.parametrize("group_by_length", [0, 2], ids=["stream-order", "length-grouped"])
def test_ddp_run_cut_into_pieces_equals_the_unbroken_run(
    tmp_path: Path, shards: Path, unbroken: dict[tuple[str, int], Path], group_by_length: int
) -> None:
    config = write_config(tmp_path / "ddp.yaml", group_by_length=group_by_length)
    cut_into_pieces(config, shards, tmp_path / "pieces")
    assert_same_run(unbroken["ddp", group_by_length], tmp_path / "pieces" / "stage1")


def test_fsdp_trains_on_cpu_with_gloo_like_ddp(unbroken: dict[tuple[str, int], Path]) -> None:
    """FSDP1 runs on CPU (device_id set: unset, torch asks for an accelerator), clips the global gradient norm
    (not each rank's shard's) and saves loadable checkpoints: its losses, and the weights and AdamW state its
    checkpoint holds, are DDP's up to reduction order."""
    fsdp, ddp = unbroken["fsdp", 0], unbroken["ddp", 0]
    assert losses(fsdp) == pytest.approx(losses(ddp), abs=1e-6)
    assert samples(fsdp, 1) == samples(ddp, 1)
    assert set(load_file(str(fsdp / "final" / "adapter_model.safetensors"))) == set(
        load_file(str(ddp / "final" / "adapter_model.safetensors"))
    )
    # what the checkpoint holds is the trained state, optimizer moments included: FSDP1's gathered moments once
    # came back all equal to exp_avg_sq on CPU (model.distributed.full_optimizer_state); that is a 100 % error
    a, b = state(fsdp), state(ddp)
    assert a.keys() == b.keys()
    off = {k: float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in a}
    worst = max(off, key=lambda k: off[k])
    assert off[worst] < 1e-4, f"{worst} is off DDP's by {off[worst]:.3g} of its largest value"


def test_fsdp_run_stopped_and_resumed_equals_the_unbroken_run(
    tmp_path: Path, shards: Path, unbroken: dict[tuple[str, int], Path]
) -> None:
    config = write_config(tmp_path / "fsdp.yaml", group_by_length=0, distributed="fsdp")
    out = tmp_path / "pieces"
    run_ok(torchrun(config, shards, out, "--stop-at", "2"))
    run_ok(torchrun(config, shards, out, "--resume", str(out / "stage1")))
    assert_same_run(unbroken["fsdp", 0], out / "stage1")
