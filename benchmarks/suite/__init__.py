"""mcdose benchmark suite (``python benchmarks/run.py``).

Modules: :mod:`.mc` (Monte Carlo decays/s and scaling), :mod:`.vdk` (convolution),
:mod:`.cnn` (residual-CNN inference), :mod:`.dataset` (campaign throughput),
:mod:`.machine` (the machine description), :mod:`.reference` (published figures, goals,
ratios), :mod:`.report` (JSON, Markdown, PNG, README) and :mod:`.common` (run context,
entries, timing and memory sampling).  See ``benchmarks/README.md``.
"""

from .common import DEVICES, GROUPS, SUITES, Context

__all__ = ["DEVICES", "GROUPS", "SUITES", "Context", "modules"]


def modules() -> dict:
    """Group name → the module's ``run(ctx)`` (imported lazily)."""
    from . import cnn, dataset, mc, vdk

    return {"mc": mc.run, "vdk": vdk.run, "cnn": cnn.run, "dataset": dataset.run}
