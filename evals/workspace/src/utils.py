"""Helpers for counting stock."""


def total_items(stock: dict[str, int]) -> int:
    """Return the number of items over all products."""
    return sum(stock.values())
