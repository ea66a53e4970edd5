from src.utils import total_items


def test_total_items():
    assert total_items({"bolts": 3, "nuts": 4}) == 7
