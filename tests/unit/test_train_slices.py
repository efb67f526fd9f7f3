"""The slice filter language: parsing, precedence, evaluation on frames, and its refusals.

The language must select exactly what pandas' own boolean operators would, treat
missing values as matching nothing but ``is null``, and refuse anything that is not a
column, a literal or one of its few operators (it is never evaluated as Python).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlkube.runtime.train.slices import (
    BoolOp,
    Compare,
    SliceError,
    columns_used,
    evaluate,
    parse_query,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [25, 55, 61, 40, np.nan, 70],
            "region": ["north", "north", "south", None, "east", "north"],
            "mean radius": [10.0, 20.0, 15.0, 12.0, 18.0, 9.5],
            "active": [True, False, True, True, False, False],
        }
    )


def rows(query: str, frame: pd.DataFrame) -> list[int]:
    return [int(i) for i in np.flatnonzero(evaluate(parse_query(query), frame))]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("age > 50", [1, 2, 5]),
        ("50 < age", [1, 2, 5]),
        ('age > 50 and region == "north"', [1, 5]),
        ("age > 50 or region == 'east'", [1, 2, 4, 5]),
        ("not age > 50", [0, 3, 4]),
        ("age > 50 and not (region == 'north' or region == 'east')", [2]),
        ("region in ['north', 'east']", [0, 1, 4, 5]),
        ("region not in ['north']", [2, 4]),
        ("region is null", [3]),
        ("age is not null and age <= 40", [0, 3]),
        ("age != 25", [1, 2, 3, 5]),
        ("`mean radius` >= 15", [1, 2, 4]),
        ("active == true", [0, 2, 3]),
        ("age >= -1e3 and age < 6.1e1", [0, 1, 3]),
        ("region > 'm'", [0, 1, 2, 5]),
        ("age > 60 and region == 'south' or age < 0", [2]),
    ],
)
def test_selects_what_pandas_would(frame: pd.DataFrame, query: str, expected: list[int]) -> None:
    assert rows(query, frame) == expected


def test_and_binds_tighter_than_or() -> None:
    node = parse_query("age > 1 or age < 0 and region == 'x'")
    assert isinstance(node, BoolOp) and node.op == "or"
    assert isinstance(node.items[0], Compare)
    assert isinstance(node.items[1], BoolOp) and node.items[1].op == "and"


def test_columns_used_lists_every_column() -> None:
    node = parse_query("(age > 1 or `mean radius` < 2) and not region in ['a'] and x is null")
    assert columns_used(node) == {"age", "mean radius", "region", "x"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("age >> 50", "expected a column name or a value at 6, found '>'"),
        ("age = 50", "unexpected character '=' at 5 (use == to compare)"),
        ("age > 50 and", "expected a column name or a value at 13, found end of query"),
        ("(age > 50", "expected ')' at 10"),
        ("age", "expected a comparison"),
        ("region in ['a' 'b']", "expected ',' or ']'"),
        ("__import__('os').system('x')", "unexpected character '.' at 17"),
        ("__import__('os')", "expected a comparison"),
        ("age > 50; drop", "unexpected character ';'"),
        ("age not > 3", "expected 'in'"),
        ("not " * 60 + "age > 1", "deeper than 50"),
    ],
)
def test_syntax_errors_say_where(query: str, message: str) -> None:
    with pytest.raises(SliceError) as error:
        parse_query(query)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("age == 'old'", "compares numeric column 'age' with a string"),
        ("region > 3", "compares text column 'region' with a number"),
        ("1 < 2", "compares two constants"),
        ("region in [1, 2]", "compares text column 'region' with a number"),
    ],
)
def test_type_mismatches_are_refused(frame: pd.DataFrame, query: str, message: str) -> None:
    with pytest.raises(SliceError, match=message):
        evaluate(parse_query(query), frame)


def test_very_long_queries_are_refused() -> None:
    with pytest.raises(SliceError, match="longer than"):
        parse_query("age > 1 and " * 200 + "age > 1")
