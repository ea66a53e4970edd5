"""Reasoning: arithmetic and short word problems with one numeric answer."""

import pytest

from pytest_punie import assert_keywords, assert_number

ARITHMETIC = [
    ("multiply", "What is 15 * 23?", 345),
    ("divide", "What is 144 divided by 12?", 12),
    ("subtract", "What is 100 minus 37?", 63),
    ("power", "What is 2 to the power of 10?", 1024),
    ("add", "What is 48 + 76?", 124),
    ("distance", "A train travels at 60 km per hour for 3 hours. How many kilometres?", 180),
    ("apples", "Tom has 5 apples and buys 7 more. How many apples does he have now?", 12),
    ("sequence", "What number comes next in the sequence 2, 4, 6, 8?", 10),
    ("weeks", "How many days are there in 3 weeks?", 21),
]


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        pytest.param(q, a, marks=pytest.mark.punie(category="reasoning", prompt=q), id=name)
        for name, q, a in ARITHMETIC
    ],
)
def test_arithmetic(punie_result, question, answer):
    assert_number(punie_result, answer)


@pytest.mark.punie(
    category="reasoning",
    prompt="All cats are animals. Tom is a cat. Is Tom an animal? Answer yes or no.",
)
def test_syllogism(punie_result):
    assert_keywords(punie_result, ["yes"])
