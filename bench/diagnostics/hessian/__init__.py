"""The loss curvature: top Hessian eigenvalues and the trace (``spectrum.py``, over
``lanczos.py``), measured at chosen steps by ``callback.py``, drawn by ``figures.py``.
"""
