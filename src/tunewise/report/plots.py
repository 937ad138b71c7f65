"""Inline SVG figures for the report, drawn with matplotlib from results.json alone.

Agg backend (no display), SVG output with `svg.fonttype: none` so text stays text (searchable, crisp,
small), math parsing off (a label with `$` is just a label), and a fixed hash salt so the same results
give byte-identical SVG. Each function returns an `<svg>` element string, or None when there is nothing
to draw. Knows nothing about how the numbers were computed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

STYLE = {"svg.fonttype": "none", "svg.hashsalt": "tunewise", "text.parse_math": False, "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False}
HIGHLIGHT, OTHER, P95 = "#c2410c", "#64748b", "#cbd5e1"


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def _colour(name: str, results: Mapping[str, Any]) -> str:
    return HIGHLIGHT if name == results["verdict"]["recommended"] else OTHER


def metric_with_ci(results: Mapping[str, Any]) -> str | None:
    metric, arms = results["primary_metric"], results["arms"]
    if not arms:
        return None
    with plt.rc_context(STYLE):
        names = sorted(arms, key=lambda a: arms[a]["metrics"][metric]["value"])
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.0))
        for y, name in enumerate(names):
            m = arms[name]["metrics"][metric]
            ax.errorbar(m["value"], y, xerr=[[m["value"] - m["low"]], [m["high"] - m["value"]]], fmt="o",
                        color=_colour(name, results), capsize=3)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel(f"{metric} ({results['confidence']:.0%} bootstrap CI)")
        return _svg(fig)


def cost_vs_quality(results: Mapping[str, Any]) -> str | None:
    """Amortised cost per 1,000 requests against quality; where no arm has a cost, p50 latency instead."""
    metric, arms = results["primary_metric"], results["arms"]
    costs = {n: a["cost"]["amortised_per_1k_usd"] for n, a in arms.items()}
    use_cost = any(c for c in costs.values())
    points = {n: ((costs[n] if use_cost else a["latency"]["latency_p50_s"] * 1000), a["metrics"][metric]["value"])
              for n, a in arms.items() if not use_cost or costs[n] is not None}
    if not points:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for name, (x, y) in points.items():
            ax.scatter([x], [y], color=_colour(name, results), zorder=3)
        frontier = _frontier(points)
        if len(frontier) > 1:  # one point makes no line, and a legend entry for nothing drawn misleads
            ax.step([p[0] for p in frontier], [p[1] for p in frontier], where="post", color=HIGHLIGHT, alpha=0.4,
                    label="frontier: nothing cheaper is better")
            ax.legend(loc="best", frameon=False)
        if use_cost and max(x for x, _ in points.values()) > 50 * max(min(x for x, _ in points.values()), 1e-12):
            ax.set_xscale("log")  # a remote arm 100x dearer than the local ones would squash them into one spot
        _place_labels(ax, points)
        ax.set_xlabel("USD per 1,000 requests (training amortised)" if use_cost else
                      "p50 latency per example, ms (no costs given)")
        ax.set_ylabel(metric)
        return _svg(fig)


def _frontier(points: Mapping[str, tuple[float, float]]) -> list[tuple[float, float]]:
    frontier, best = [], float("-inf")
    for _name, (x, y) in sorted(points.items(), key=lambda item: (item[1][0], -item[1][1])):
        if y > best:
            frontier.append((x, y))
            best = y
    return frontier


LABEL_OFFSETS = ((5, 4), (5, -11), (-5, 4), (-5, -11), (5, 15), (5, -22), (-5, 15), (-5, -22))


def _place_labels(ax: Any, points: Mapping[str, tuple[float, float]]) -> None:
    """Name each point at the first of a few offsets whose text box (estimated from the font size) overlaps no
    label placed before it; arms with near-equal cost and quality would otherwise print over each other."""
    ax.autoscale_view()
    char_w, line_h = 5.4, 10.0  # display pixels per character and per line at font size 9, 72 dpi
    placed: list[tuple[float, float, float, float]] = []
    for name, (x, y) in sorted(points.items(), key=lambda item: (-item[1][1], item[1][0])):
        px, py = ax.transData.transform((x, y))
        width = char_w * len(name)
        for dx, dy in LABEL_OFFSETS:
            left = px + dx if dx > 0 else px + dx - width
            box = (left, py + dy, left + width, py + dy + line_h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), ha="left" if dx > 0 else "right")


def latency(results: Mapping[str, Any]) -> str | None:
    arms = results["arms"]
    if not arms:
        return None
    from matplotlib.patches import Patch

    with plt.rc_context(STYLE):
        names = sorted(arms, key=lambda a: arms[a]["latency"]["latency_p50_s"])
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.0))
        p50 = [arms[n]["latency"]["latency_p50_s"] * 1000 for n in names]
        p95 = [arms[n]["latency"]["latency_p95_s"] * 1000 for n in names]
        ax.barh(names, p95, color=P95)
        ax.barh(names, p50, color=[_colour(n, results) for n in names])
        # the p50 bars take the arm's colour (recommended or not), so the legend names both colours itself
        handles = [Patch(color=OTHER, label="p50"), Patch(color=P95, label="p95")]
        if results["verdict"]["recommended"] in names:
            handles.insert(1, Patch(color=HIGHLIGHT, label="p50, recommended arm"))
        ax.set_xlabel("latency per example, ms")
        ax.legend(handles=handles, loc="lower right", frameon=False)
        return _svg(fig)


def confusion(results: Mapping[str, Any], arm: str | None) -> str | None:
    matrix = results["arms"].get(arm, {}).get("confusion") if arm else None
    if not matrix:
        return None
    labels, values = matrix["labels"], matrix["matrix"]
    with plt.rc_context(STYLE):
        size = 0.5 * len(labels) + 1.6
        fig, ax = plt.subplots(figsize=(size + 1, size))
        ax.imshow(values, cmap="Oranges")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel(f"predicted by {arm}")
        ax.set_ylabel("reference")
        peak = max(max(row) for row in values) or 1
        for i, row in enumerate(values):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
        return _svg(fig)


def learning_curves(results: Mapping[str, Any]) -> str | None:
    """Metric against the share of training data, one line per fine-tuned arm with a learning curve."""
    curves = {n: a["training"]["learning_curve"] for n, a in results["arms"].items()
              if a.get("training") and a["training"].get("learning_curve")}
    if not curves:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        for name, points in curves.items():
            points = sorted(points, key=lambda p: p["train_examples"])
            line, = ax.plot([p["train_examples"] for p in points], [p["value"] for p in points], marker="o", label=name)
            _projected(ax, results["arms"][name].get("projection"), points[-1], line.get_color(), name)
        ax.set_xlabel("training examples")
        ax.set_ylabel(next(iter(curves.values()))[0]["metric"])
        ax.legend(frameon=False)
        return _svg(fig)


def _projected(ax: Any, record: Mapping[str, Any] | None, last: Mapping[str, Any], colour: str, name: str) -> None:
    """The fitted curve's projection to 2x and 4x the data (dashed, with its 95% interval) and the
    recommended arm's level it is compared with (evaluate/projection.py)."""
    if not record or not record.get("fitted"):
        return
    rows = record["projections"]
    xs = [last["train_examples"]] + [p["train_examples"] for p in rows]
    ax.plot(xs, [last["value"]] + [p["value"] for p in rows], linestyle="--", color=colour, alpha=0.8,
            label=f"{name}, projected")
    ax.errorbar([p["train_examples"] for p in rows], [p["value"] for p in rows], fmt="none", ecolor=colour,
                yerr=[[p["value"] - p["low"] for p in rows], [p["high"] - p["value"] for p in rows]], capsize=3)
    if record.get("target") is not None and record.get("target_arm") != name:
        ax.axhline(record["target"], color="#888888", linestyle=":", linewidth=1,
                   label=f"recommended {record['target_arm']}")


def loss_curves(results: Mapping[str, Any]) -> str | None:
    """Training and validation loss per arm. Arms that log steps are drawn by step; when some arm logs only
    epochs (the classifier head does), every curve is drawn against its share of training instead."""
    histories = {n: a["training"]["history"] for n, a in results["arms"].items()
                 if a.get("training") and a["training"].get("history")}
    if not histories:
        return None
    by_step = all(h.get("step") is not None for history in histories.values() for h in history)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        for name, history in histories.items():
            xs = _progress(history, by_step)
            for key, style in (("train_loss", "-"), ("val_loss", "--")):
                points = [(x, h[key]) for x, h in zip(xs, history) if h.get(key) is not None]
                if points:
                    ax.plot(*zip(*points), style, marker=".", label=f"{name} {key.replace('_', ' ')}")
        ax.set_xlabel("step" if by_step else "share of training (steps or epochs)")
        ax.set_ylabel("loss")
        ax.legend(frameon=False)
        return _svg(fig)


def _progress(history: list[Mapping[str, Any]], by_step: bool) -> list[float]:
    if by_step:
        return [float(h["step"]) for h in history]
    raw = [float(h.get("step") or h.get("epoch") or i + 1) for i, h in enumerate(history)]
    top = max(raw) or 1.0
    return [x / top for x in raw]


def robustness(results: Mapping[str, Any]) -> str | None:
    table = results.get("robustness") or {}
    arms = [a for a in table if isinstance(table[a], dict) and table[a]]
    if not arms:
        return None
    perturbations = sorted({p for a in arms for p in table[a]})
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(arms) * len(perturbations) + 1.2))
        height = 0.8 / len(perturbations)
        for k, perturbation in enumerate(perturbations):
            drops = [table[a].get(perturbation, {}).get("drop", 0.0) for a in arms]
            ax.barh([i + k * height for i in range(len(arms))], drops, height=height, label=perturbation)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(arms))], arms)
        ax.set_xlabel(f"drop in {results['primary_metric']} under perturbation")
        ax.legend(frameon=False)
        return _svg(fig)


def all_figures(results: Mapping[str, Any]) -> dict[str, str | None]:
    """Every figure by name, in report order; None where there is nothing to draw."""
    figures = {
        "metric": metric_with_ci(results), "cost_quality": cost_vs_quality(results), "latency": latency(results),
        "confusion": confusion(results, results["verdict"]["recommended"]),
        "learning_curve": learning_curves(results), "loss": loss_curves(results), "robustness": robustness(results),
    }
    return {name: _strip_ids(svg, name) if svg else None for name, svg in figures.items()}


def _strip_ids(svg: str, prefix: str) -> str:
    """Several SVGs share one HTML page: prefix their element ids (clip paths, glyphs) so none collide."""
    return re.sub(r'(id="|url\(#|href="#)([^"\)]+)', lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
