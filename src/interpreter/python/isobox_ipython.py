"""Loaded into every Isobox python kernel at start (with runpy, so the user namespace stays
clean).

Registers two display formatters that E2B's code-interpreter clients read:
  e2b/data   a pandas DataFrame as {column: [values]}
  e2b/chart  a matplotlib Figure described as data (isobox_charts.py, loaded from beside
             this file)
Each checks sys.modules first: an object can only be a DataFrame or a Figure if the user
imported pandas or matplotlib, so `1 + 1` never pays for those imports.

Also patches, once user code imports them: matplotlib's Axes.bxp (box plot statistics for
the chart) and PIL's Image.show/save (the image becomes a result).
"""

import importlib.abc
import importlib.util
import math
import os
import sys

import IPython
from IPython.core.formatters import BaseFormatter
from traitlets import ObjectName, Unicode


def _load_charts():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "isobox_charts.py")
    spec = importlib.util.spec_from_file_location("isobox_charts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_charts = _load_charts()


def _plain(value):
    """A JSON-safe value: numpy and pandas scalars become Python ones, NaN becomes None."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class DataFormatter(BaseFormatter):
    format_type = Unicode("e2b/data")
    print_method = ObjectName("_repr_e2b_data_")
    _return_type = (dict,)

    def __call__(self, obj):
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(obj, pandas.DataFrame):
            return super().__call__(obj)
        return {str(column): [_plain(v) for v in obj[column].tolist()] for column in obj.columns}


class ChartFormatter(BaseFormatter):
    format_type = Unicode("e2b/chart")
    print_method = ObjectName("_repr_e2b_chart_")
    _return_type = (dict,)

    def __call__(self, obj):
        if "matplotlib" not in sys.modules:
            return super().__call__(obj)
        from matplotlib.figure import Figure

        if not isinstance(obj, Figure):
            return super().__call__(obj)
        try:
            return _charts.figure_chart(obj)
        except Exception:  # a figure we cannot describe still shows as an image
            return None


def _patch_pil(image_module):
    """PIL images show as results, as E2B's sandboxes do: Image.show() displays the image
    (there is no viewer to start), and Image.save() to a file name displays it too."""
    from IPython.display import display

    image_class = image_module.Image
    if getattr(image_class.save, "_isobox", False):
        return
    original_save = image_class.save

    def show(self, *args, **kwargs):
        display(self)

    def save(self, fp, *args, **kwargs):
        if isinstance(fp, (str, os.PathLike)):
            display(self)
        return original_save(self, fp, *args, **kwargs)

    save._isobox = True
    image_class.show = show
    image_class.save = save


# Module name -> what to do right after it is imported. Importing matplotlib or PIL here
# would cost every kernel ~0.5 s, so the patches wait until user code imports them.
_AFTER_IMPORT = {
    "matplotlib.axes": lambda module: _charts.record_box_stats(),
    "PIL.Image": _patch_pil,
}


class _ImportHook(importlib.abc.MetaPathFinder):
    """Runs the _AFTER_IMPORT patch of a module right after the module is imported."""

    def find_spec(self, name, path, target=None):
        patch = _AFTER_IMPORT.pop(name, None)
        if patch is None:
            return None
        if not _AFTER_IMPORT:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            try:
                patch(module)
            except Exception:  # a patch must never break the user's import
                pass

        spec.loader.exec_module = exec_module
        return spec


_ip = IPython.get_ipython()
_ip.display_formatter.formatters["e2b/data"] = DataFormatter(parent=_ip.display_formatter)
_ip.display_formatter.formatters["e2b/chart"] = ChartFormatter(parent=_ip.display_formatter)
for _name in list(_AFTER_IMPORT):
    if _name in sys.modules:
        _AFTER_IMPORT.pop(_name)(sys.modules[_name])
if _AFTER_IMPORT:
    sys.meta_path.insert(0, _ImportHook())
