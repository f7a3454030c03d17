"""Compilation recipes: which passes run, in which order, as data.

``PIPELINES`` maps a stage name to a list of pass names (see
``neurocomp.passes.PASSES``); the CLI can print them and the compile driver
runs them with ``run_pipeline``.
"""
from __future__ import annotations

PIPELINES: dict[str, list[str]] = {
    # graph clean-up that changes no output (to 1e-4)
    "canonicalize": ["fold_batchnorm", "fold_linear_layers"],
    # analyses that need calibration data; they annotate node meta only
    "calibrate": ["balance_thresholds"],
}


def passes_for(options) -> list[str]:
    """The float-IR passes a compile runs for ``options`` (a ``ConvertOptions``)."""
    names = list(PIPELINES["canonicalize"])
    if options.fold_pooling:
        names.append("fold_avgpool")
    names += PIPELINES["calibrate"]
    if options.normalization == "spike-norm":
        names.append("spike_norm")
    return names


def describe(stage: str) -> list[tuple[str, str]]:
    """(pass name, one-line summary) for every pass of ``stage``."""
    from neurocomp.passes import PASSES
    return [(n, PASSES[n].summary) for n in PIPELINES[stage]]
