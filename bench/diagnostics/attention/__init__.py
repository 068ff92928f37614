"""What attention does: layers recorded through forward hooks (``recorder.py``), entropy
and logit statistics of one forward (``stats.py``), attention maps at init and at the
end (``maps.py``: the callback) as files and figures (``plot.py``: numpy and matplotlib).
"""
