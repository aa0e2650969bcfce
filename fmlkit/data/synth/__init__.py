"""`fmlkit synth`: a synthetic identity dataset with planted, documented defects (`synth`),
drawn (`draw`) from face-like identities (`faces`)."""

from __future__ import annotations

from fmlkit.data.synth.synth import SynthReport, generate_synthetic_dataset

__all__ = ["SynthReport", "generate_synthetic_dataset"]
