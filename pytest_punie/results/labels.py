"""How values are named wherever they are shown: a score as a percentage, the last part of a
path, a run's label. Plain functions of values with no markup, so data modules (``compare``,
``history``) and the renderers share one rule without a data module importing a renderer.
"""

from __future__ import annotations

__all__ = ["path_name", "percent", "run_label"]


def percent(value: float | None) -> str:
    """A score as a percentage with one decimal; "-" for none."""
    return "-" if value is None else f"{value:.1%}"


def path_name(path: str) -> str:
    """The last part of a model or adapter path (or repo id), for labels."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or path


def run_label(model: str | None, adapter: str | None, label: str | None = None) -> str:
    """The one name of a run everywhere: its label if given, else ``model + adapter`` or
    ``model (base)``; the model comes first because runs of one model are read together."""
    if label:
        return label
    model_part = path_name(model) if model else "unknown model"
    return f"{model_part} + {path_name(adapter)}" if adapter else f"{model_part} (base)"
