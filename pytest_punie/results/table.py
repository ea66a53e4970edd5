"""A table as data: a header and rows of :class:`Cell` values.

Data modules (``history``) build tables; ``render.to_text`` draws them for the terminal and the
report's templates lay them out as HTML, so the two forms never drift apart. Nothing here makes
markup.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Cell", "Table"]


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, the number it shows (to rank), whether it is the best of its
    column and a note (the HTML's tooltip).

    ``html`` is no longer rendered (a cell holds text, never markup); it stays only so callers
    that copy a cell positionally keep working, and goes once none does.
    """

    text: str
    value: float | None = None
    best: bool = False
    note: str = ""
    html: str | None = None

    def __str__(self) -> str:
        return f"{self.text}*" if self.best else self.text


@dataclass(frozen=True)
class Table:
    """A header and rows of cells; ``left`` columns are names (left-aligned), the others numbers.

    ``row_classes`` (one per row, or none) become the HTML rows' classes; with ``total_row`` the
    text form draws a rule above the last row.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    left: frozenset[int] = frozenset({0})
    total_row: bool = False
    row_classes: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        header: Sequence[str],
        rows: Iterable[Sequence[str | Cell]],
        *,
        left: Collection[int] = (0,),
        total_row: bool = False,
        row_classes: Sequence[str] = (),
    ) -> Table:
        """A table from strings or cells (a string becomes a plain cell)."""
        return cls(
            tuple(header),
            tuple(tuple(c if isinstance(c, Cell) else Cell(str(c)) for c in row) for row in rows),
            frozenset(left),
            total_row,
            tuple(row_classes),
        )

    def row_class(self, index: int) -> str:
        """The class of row ``index`` ("" when it has none)."""
        return self.row_classes[index] if index < len(self.row_classes) else ""
