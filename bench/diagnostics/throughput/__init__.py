"""Speed and cost: the per-run callback (``callback.py``), FLOPs by the 6N rule
(``flops.py``), the machine's peak (``peak.py``), peak memory, time kept out of
throughput (``stopwatch.py``) and order-statistic intervals of medians
(``median_interval.py``).
"""
