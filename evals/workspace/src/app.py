"""Print the warehouse stock."""

import json
from pathlib import Path

from src.utils import total_items


def main() -> None:
    stock = json.loads(Path("data/stock.json").read_text())
    print(f"{total_items(stock)} items in stock")


if __name__ == "__main__":
    main()
