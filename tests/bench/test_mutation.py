"""The mutation harness (bench/mutation.py): its list stays in step with the code, and a planted bug is
judged by the tests' outcome in a copy, never by the harness's own say-so."""

from __future__ import annotations

from pathlib import Path

from bench.mutants import MUTANTS, Mutant
from bench.mutation import run_mutant
from tests.conftest import ROOT


def test_every_snippet_occurs_once_and_every_target_exists() -> None:
    """A snippet edited away by a later change would make its mutant a harness error: caught here first."""
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    for m in MUTANTS:
        assert (ROOT / m.file).read_text().count(m.old) == 1, f"{m.file}: snippet of {m.name!r}"
        assert m.old != m.new, m.name
        assert m.tests and all((ROOT / t.split("::")[0]).exists() for t in m.tests), m.name


def test_killed_survived_equivalent_and_error(tmp_path: Path) -> None:
    (tmp_path / "lib.py").write_text("def double(x):\n    return 2 * x\n\n\ndef unused():\n    return 1\n")
    (tmp_path / "test_lib.py").write_text(
        "from lib import double\n\n\ndef test_double():\n    assert double(3) == 6\n"
    )
    original = (tmp_path / "lib.py").read_text()

    def judge(old: str, new: str, equivalent: str = "") -> str:
        m = Mutant("p", old, "lib.py", old, new, ("test_lib.py",), equivalent)
        status = run_mutant(tmp_path, m, timeout=60).status
        assert (tmp_path / "lib.py").read_text() == original  # restored
        return status

    assert judge("return 2 * x", "return 2 + x") == "killed"
    assert judge("return 1", "return 2") == "survived"
    assert judge("return 1", "return 2", equivalent="never called") == "equivalent"
    assert judge("return 3 * x", "return x") == "error"  # snippet not in the file
    assert judge("return", "yield") == "error"  # snippet not unique
