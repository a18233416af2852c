"""bench/aef_block_reads.py on a small layout: the count it reports is the real provider's, and the
lattice cache reads each block once where whole blocks are read again."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.aef_block_reads import distinct_blocks, run_policy, sparse_tile, task_anchors
from triplet_builder.embeddings import cog


def test_the_lattice_cache_reads_each_block_once_where_whole_blocks_do_not(tmp_path: Path) -> None:
    # 8 chips of 64 px a row, tasks of 6 windows: each task's rows cross the 128 px blocks of the next
    tasks = task_anchors(512, 256, chip=64, grid=4, per_task=6)
    root = tmp_path / "annual"
    sparse_tile(root, 512 + 256, 256 + 256, 128)
    floor = distinct_blocks(root, tasks)
    block = 64 * 128 * 128
    none = run_policy(root, tasks, 2 * block, "none")
    whole = run_policy(root, tasks, 2 * block, "whole_blocks")  # room for two whole blocks
    lattice = run_policy(root, tasks, 2 * block, "lattice")
    assert len(tasks) == 6 and floor >= 6
    assert lattice == {"block_reads": floor, "cache_hits": none["block_reads"] - floor}
    assert none["block_reads"] > whole["block_reads"] > floor
    assert cog.lattice_of(np.array([0, 4]), 0) == (0, 4)  # the policy switch was undone
