"""Custom Lava processes (kept in their own folder: Lava imports every module
beside a process when it searches for its models)."""
from .process import FewSpike, LIFSoftReset  # noqa: F401
from . import models  # noqa: F401

# processes whose chip implementation needs Loihi 2 microcode (not NetX-expressible)
NEEDS_MICROCODE = ("LIFSoftReset", "FewSpike")
