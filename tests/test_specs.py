"""The executable references of the spec sheet (../shared/specs) still pass
against the installed lava-nc / lava-dl."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT.parent / "shared" / "specs"
VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PY) if VENV_PY.exists() else sys.executable

pytestmark = pytest.mark.skipif(not SPECS.is_dir(),
                                reason=f"{SPECS} not found (the ../shared checkout is absent)")


@pytest.mark.parametrize("script, args, token", [
    ("lif_dense_bitexact.py", [], "PASS"),
    ("lif_dense_bitexact.py", ["--mutants"], "MUTANTS ALL DETECTED"),
    ("netx_min.py", [], "PASS"),
])
def test_spec_script(script, args, token, tmp_path):
    path = SPECS / script
    if not path.exists():
        pytest.skip(f"{path} not found")
    proc = subprocess.run([PYTHON, str(path), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} {args} exited {proc.returncode}:\n{out[-3000:]}"
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    assert token in lines, f"{script} {args}: no '{token}' line in the output:\n{out[-3000:]}"
    assert "FAIL" not in lines and "NOT detected" not in proc.stdout
