"""Code generation: the answer's Python code must parse and pass the asserts."""

import pytest

from pytest_punie import assert_python_code

TASKS = [
    (
        "Write a function to calculate factorial",
        ["assert factorial(0) == 1", "assert factorial(5) == 120"],
    ),
    (
        "Write a Python function is_palindrome(s) that returns True if s reads the same backwards.",
        ["assert is_palindrome('level')", "assert not is_palindrome('python')"],
    ),
    (
        "Write a Python function fibonacci(n) that returns the n-th Fibonacci number, "
        "with fibonacci(0) == 0 and fibonacci(1) == 1.",
        ["assert fibonacci(1) == 1", "assert fibonacci(10) == 55"],
    ),
    (
        "Write a Python function reverse_string(s) that returns s reversed.",
        ["assert reverse_string('abc') == 'cba'", "assert reverse_string('') == ''"],
    ),
    (
        "Write a Python function sum_even(numbers) that returns the sum of the even numbers "
        "in a list.",
        ["assert sum_even([1, 2, 3, 4]) == 6", "assert sum_even([]) == 0"],
    ),
    (
        "Write a Python function count_vowels(text) that counts the vowels a, e, i, o, u in "
        "a string.",
        ["assert count_vowels('hello') == 2", "assert count_vowels('xyz') == 0"],
    ),
    (
        "Write a Python function celsius_to_fahrenheit(c) that converts Celsius to Fahrenheit.",
        ["assert celsius_to_fahrenheit(0) == 32", "assert celsius_to_fahrenheit(100) == 212"],
    ),
    (
        "Write a Python function find_max(numbers) that returns the largest number in a list.",
        ["assert find_max([3, 9, 2]) == 9", "assert find_max([-5, -1]) == -1"],
    ),
    (
        "Write a Python function is_even(n) that returns True when the integer n is even.",
        ["assert is_even(4)", "assert not is_even(7)", "assert is_even(0)"],
    ),
    (
        "Write a Python function last_item(items) that returns the last element of a list, "
        "or None when the list is empty.",
        ["assert last_item([1, 2, 3]) == 3", "assert last_item([]) is None"],
    ),
]


@pytest.mark.parametrize(
    ("task", "tests"),
    [
        pytest.param(
            task,
            tests,
            marks=pytest.mark.punie(category="code_generation", prompt=task),
            id=tests[0].split("(")[0].removeprefix("assert ").removeprefix("not "),
        )
        for task, tests in TASKS
    ],
)
def test_writes_working_code(punie_result, task, tests):
    assert_python_code(punie_result, tests=tests)
