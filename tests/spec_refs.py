"""Load the executable references of ../shared/specs (without running their Lava parts)."""
import importlib.util
from pathlib import Path

import pytest

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"


def load_spec_module(name: str):
    path = SPECS / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path} not found: ../shared must sit beside the project root")
    from neurocomp.backends._mp import allow_lava_start_method
    allow_lava_start_method()          # the spec scripts import Lava's runtime at module level
    spec = importlib.util.spec_from_file_location(f"spec_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
