"""Describes a matplotlib Figure as data: the `chart` object of E2B's code-interpreter SDKs.

    {"type": "line" | "scatter" | "bar" | "pie" | "box_and_whisker" | "superchart" | "unknown",
     "title": str | None, "elements": [...],
     # 2D charts: "x_label", "y_label", "x_unit", "y_unit"
     # line and scatter: "x_scale", "y_scale", "x_ticks", "y_ticks", "x_tick_labels",
     #                   "y_tick_labels"; elements [{"label", "points": [[x, y], ...]}]
     # bar: elements [{"label", "value", "group"}]
     # pie: elements [{"label", "angle", "radius"}]
     # box_and_whisker: elements [{"label", "min", "first_quartile", "median",
     #                             "third_quartile", "max", "outliers"}]
     # superchart (a figure with several charts): elements [chart, ...]}

Box plots are described from the statistics matplotlib computed (recorded by a wrapper
around Axes.bxp that `record_box_stats` installs), not guessed from the drawn lines.
"""

import math
import re

_UNIT = re.compile(r"\(([^()]+)\)\s*$|\[([^\[\]]+)\]\s*$")
_MATHDEFAULT = re.compile(r"\$\\mathdefault\{(.*)\}\$")


def _number(value):
    """A JSON-safe Python number (NaN and infinities become None)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _unit(label):
    match = _UNIT.search(label or "")
    return (match.group(1) or match.group(2)).strip() if match else None


def _is_dates(axis):
    from matplotlib import dates

    formatter = axis.get_major_formatter()
    return isinstance(formatter, (dates.DateFormatter, dates.AutoDateFormatter,
                                  dates.ConciseDateFormatter))


def _is_categories(axis):
    from matplotlib import category

    return isinstance(axis.units, category.UnitData)


def _scale(ax, axis, name):
    if _is_dates(axis):
        return "datetime"
    if _is_categories(axis):
        return "categorical"
    return getattr(ax, f"get_{name}scale")()


def _value(axis, value):
    """A coordinate as the user sees it: an ISO date, a category name, or a number."""
    if _is_dates(axis):
        from matplotlib import dates

        try:
            return dates.num2date(float(value)).isoformat()
        except (TypeError, ValueError, OverflowError):
            return None
    if _is_categories(axis):
        for name, code in axis.units._mapping.items():
            if code == value:
                return str(name)
    return _number(value)


def _plain_label(text):
    """A tick label without mathtext markup: "$\\mathdefault{10^{3}}$" becomes "10^{3}"."""
    match = _MATHDEFAULT.fullmatch(text)
    return match.group(1) if match else text


def _ticks(axis, limits):
    low, high = sorted(limits)
    ticks, labels = [], []
    for tick, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels()):
        if low - 1e-9 <= tick <= high + 1e-9:
            ticks.append(_value(axis, tick))
            labels.append(_plain_label(label.get_text()))
    return ticks, labels


def _base(kind, ax):
    xlabel, ylabel = ax.get_xlabel(), ax.get_ylabel()
    return {"type": kind, "title": ax.get_title() or None, "x_label": xlabel or None,
            "y_label": ylabel or None, "x_unit": _unit(xlabel), "y_unit": _unit(ylabel),
            "elements": []}


def _points_chart(kind, ax, series):
    chart = _base(kind, ax)
    chart["x_scale"] = _scale(ax, ax.xaxis, "x")
    chart["y_scale"] = _scale(ax, ax.yaxis, "y")
    chart["x_ticks"], chart["x_tick_labels"] = _ticks(ax.xaxis, ax.get_xlim())
    chart["y_ticks"], chart["y_tick_labels"] = _ticks(ax.yaxis, ax.get_ylim())
    for label, points in series:
        chart["elements"].append({
            "label": label,
            "points": [[_value(ax.xaxis, x), _value(ax.yaxis, y)] for x, y in points],
        })
    return chart


def _label(artist, index):
    label = artist.get_label() or ""
    return f"series {index}" if label.startswith("_") or not label else label


def _bar_chart(ax):
    from matplotlib.container import BarContainer

    chart = _base("bar", ax)
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    horizontal = any(getattr(c, "orientation", None) == "horizontal" for c in containers)
    axis = ax.yaxis if horizontal else ax.xaxis
    for index, container in enumerate(containers):
        group = container.get_label() or ""
        group = f"group {index}" if group.startswith("_") or not group else group
        for rect in container.patches:
            if horizontal:
                position, value = rect.get_y() + rect.get_height() / 2, rect.get_width()
            else:
                position, value = rect.get_x() + rect.get_width() / 2, rect.get_height()
            label = _value(axis, round(position)) if _is_categories(axis) else None
            if label is None:
                ticks, labels = _ticks(axis, (position, position))
                label = labels[0] if labels else str(_number(position))
            chart["elements"].append({"label": label, "value": _number(value), "group": group})
    if horizontal:
        chart["x_label"], chart["y_label"] = chart["y_label"], chart["x_label"]
        chart["x_unit"], chart["y_unit"] = chart["y_unit"], chart["x_unit"]
    return chart


def _pie_chart(ax, wedges):
    chart = {"type": "pie", "title": ax.get_title() or None, "elements": []}
    for index, wedge in enumerate(wedges):
        chart["elements"].append({"label": _label(wedge, index),
                                  # matplotlib keeps the angles in float32: 324 is
                                  # 323.99999; a hundredth of a degree is plenty.
                                  "angle": _number(round(abs(wedge.theta2 - wedge.theta1), 2)),
                                  "radius": _number(wedge.r)})
    return chart


def _box_chart(ax, stats):
    chart = _base("box_and_whisker", ax)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    for index, box in enumerate(stats):
        label = box.get("label")
        if label is None:
            label = labels[index] if index < len(labels) else str(index + 1)
        chart["elements"].append({
            "label": str(label), "min": _number(box["whislo"]),
            "first_quartile": _number(box["q1"]), "median": _number(box["med"]),
            "third_quartile": _number(box["q3"]), "max": _number(box["whishi"]),
            "outliers": [_number(v) for v in box.get("fliers", [])],
        })
    return chart


def axes_chart(ax):
    """The chart of one Axes, or None when it shows nothing we can describe."""
    from matplotlib.collections import PathCollection
    from matplotlib.patches import Wedge

    stats = getattr(ax, "_isobox_box_stats", None)
    if stats:
        return _box_chart(ax, stats)
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    if wedges:
        return _pie_chart(ax, wedges)
    if ax.containers:
        return _bar_chart(ax)
    lines = [l for l in ax.get_lines() if l.get_linestyle() not in ("None", "", " ")]
    if lines:
        return _points_chart("line", ax, [(_label(l, i), l.get_xydata()) for i, l in
                                          enumerate(lines)])
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    if scatters:
        return _points_chart("scatter", ax, [(_label(c, i), c.get_offsets()) for i, c in
                                             enumerate(scatters)])
    return None


def figure_chart(figure):
    """The chart of a Figure: one chart, a superchart of several, or type "unknown"."""
    figure.canvas.draw()  # tick labels exist only once the figure has been laid out
    charts = [c for c in (axes_chart(ax) for ax in figure.get_axes()) if c is not None]
    if len(charts) == 1:
        return charts[0]
    suptitle = figure._suptitle.get_text() if figure._suptitle else None
    if len(charts) > 1:
        return {"type": "superchart", "title": suptitle or None, "elements": charts}
    # Nothing we can describe: still name it, from the one Axes' title if there is one.
    axes = figure.get_axes()
    title = suptitle or (axes[0].get_title() if len(axes) == 1 else None)
    return {"type": "unknown", "title": title or None, "elements": []}


def record_box_stats():
    """Wraps Axes.bxp so that each Axes remembers the statistics of the boxes it drew."""
    from matplotlib.axes import Axes

    if getattr(Axes.bxp, "_isobox", False):
        return
    original = Axes.bxp

    def bxp(self, bxpstats, *args, **kwargs):
        self._isobox_box_stats = list(getattr(self, "_isobox_box_stats", []) or []) + [
            dict(s) for s in bxpstats]
        return original(self, bxpstats, *args, **kwargs)

    bxp._isobox = True
    Axes.bxp = bxp
