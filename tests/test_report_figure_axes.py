"""Log-scale axes of report figures keep their tick labels readable."""

from __future__ import annotations

import itertools

import numpy as np

from bench.report.figures.style import log_axis, new_figure

QUICKSTART_LR = (2.0e-3, 6.0e-2)  # sweeps/quickstart.yaml's train.lr range


def _visible_labels(fig, axis: str):
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ticks = (ax.xaxis if axis == "x" else ax.yaxis).get_ticklabels(which="both")
    return [
        (t.get_text(), t.get_window_extent(renderer))
        for t in ticks
        if t.get_visible() and t.get_text() and lo <= t.get_position()[axis == "y"] <= hi
    ]


def _lr_figure(scale):
    fig = new_figure(4.6)
    ax = fig.add_subplot()
    lrs = np.geomspace(*QUICKSTART_LR, 5)
    ax.scatter(lrs, np.linspace(1.0, 0.1, 5))
    for b in QUICKSTART_LR:
        ax.axvline(b, ls="--")
    scale(ax)
    return fig


def _overlapping(labels):
    return [(a, b) for (a, ea), (b, eb) in itertools.combinations(labels, 2) if ea.overlaps(eb)]


def test_the_quickstart_learning_rate_axis_has_no_colliding_labels():
    labels = _visible_labels(_lr_figure(lambda ax: log_axis(ax, "x", *QUICKSTART_LR)), "x")
    assert len(labels) >= 3
    assert _overlapping(labels) == []
    assert {"0.005", "0.01", "0.02"} <= {text for text, _ in labels}  # plain numbers


def test_matplotlibs_default_log_axis_collides_on_the_same_figure():
    """The defect log_axis exists for: the default formatter labels minor ticks here."""
    labels = _visible_labels(_lr_figure(lambda ax: ax.set_xscale("log")), "x")
    assert _overlapping(labels) != []


def test_a_wide_range_gets_one_label_a_decade():
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([1, 2], [1e-5, 3.0])
    log_axis(ax, "y", 1e-5, 3.0)
    texts = [text for text, _ in _visible_labels(fig, "y")]
    assert len(texts) >= 4
    assert all(float(np.log10(float(t))).is_integer() for t in texts)  # powers of ten only
    assert _overlapping(_visible_labels(fig, "y")) == []
