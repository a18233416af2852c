"""The planted bugs of the mutation check (`python -m bench.mutation`, `make mutation`): one per entry, each
an exact snippet of a file (it must occur there exactly once), its replacement, the tests that must fail
with it, and the critical path of issue #14 it belongs to (bench/mutant_kinds.py). The lists are kept by
part of the project: bench/mutants_builder.py (pixels, geometry, runs), bench/mutants_io.py (sources,
payload, labels, writer), bench/mutants_checker.py and bench/mutants_trainer.py."""

from __future__ import annotations

from bench.mutant_kinds import Mutant
from bench.mutants_builder import MUTANTS as BUILDER
from bench.mutants_checker import MUTANTS as CHECKER
from bench.mutants_io import MUTANTS as IO
from bench.mutants_trainer import MUTANTS as TRAINER

MUTANTS: tuple[Mutant, ...] = BUILDER + IO + CHECKER + TRAINER

__all__ = ["MUTANTS", "Mutant"]
