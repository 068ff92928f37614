"""Gradient conditioning during training: per-block gradient norms, update ratios and
the gradient noise scale (``callback.py``), their plain computations (``stats.py``,
``noise_scale.py``) and figures (``figures.py``).
"""
