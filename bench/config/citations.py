"""The paper behind an axis value, as ``bench variants`` prints it under the axis.

One entry per value whose source a reader needs to find; the docstring of the class
that implements the value (``bench.model``) cites the same paper with its equations.
"""

from __future__ import annotations

CITATIONS: dict[str, dict[str, str]] = {
    # --- Positions (issue 26: bench.model.positional) ---
    "pos_encoding": {
        "fire": "Li et al. 2023, Functional Interpolation for Relative Positions Improves "
        "Long Context Transformers (ICLR 2024, arXiv 2310.04418)",
    },
    "rope_scaling": {
        "pi": "Chen et al. 2023, Extending Context Window of Large Language Models via "
        "Positional Interpolation (arXiv 2306.15595)",
        "ntk": "bloc97 2023, NTK-aware scaled RoPE (r/LocalLLaMA; jquesnelle/yarn)",
        "yarn": "Peng et al. 2023, YaRN: Efficient Context Window Extension of Large "
        "Language Models (ICLR 2024, arXiv 2309.00071)",
    },
    # --- end Positions ---
}
