"""A small, safe filter language for slice metrics: ``age > 50 and region == "north"``.

Slice queries come from manifests, so they are parsed by a tokenizer and a recursive
descent parser into a tree of a few node types and evaluated with vectorised pandas
comparisons; nothing is ever handed to ``eval`` or ``DataFrame.query``, so a query can
read columns and nothing else. Grammar (keywords lower case)::

    expr       := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" expr ")" | comparison
    comparison := value OP value | value ["not"] "in" "[" literal ("," literal)* "]"
                | value "is" ["not"] "null"
    value      := NAME | `any column name` | literal
    literal    := NUMBER | "string" | 'string' | true | false
    OP         := == != < <= > >=

A missing value satisfies only ``is null`` (and its negation through ``not``), so
``x != 1`` does not select rows where ``x`` is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from mlkube.runtime.train import TrainingInputError

MAX_QUERY_LENGTH: Final = 2000
MAX_DEPTH: Final = 50
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
_TOKEN: Final = re.compile(
    r"""\s*(?:
      (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<quoted>`[^`]+`)
    | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<op>==|!=|<=|>=|<|>)
    | (?P<punct>[()\[\],])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, keyword, op, punct, end
    text: str
    position: int


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: float | str | bool


@dataclass(frozen=True)
class Compare:
    op: str
    left: Column | Literal
    right: Column | Literal


@dataclass(frozen=True)
class InList:
    value: Column | Literal
    options: tuple[float | str | bool, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull:
    value: Column | Literal
    negated: bool


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | InList | IsNull | BoolOp | Not


class SliceError(TrainingInputError):
    """A slice query that does not parse or does not fit the data."""


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while True:
        while position < len(query) and query[position].isspace():
            position += 1
        if position >= len(query):
            tokens.append(Token("end", "", position + 1))
            return tokens
        match = _TOKEN.match(query, position)
        if match is None or match.lastgroup is None:
            hint = " (use == to compare)" if query[position] == "=" else ""
            raise SliceError(f"unexpected character {query[position]!r} at {position + 1}{hint}")
        kind, text = match.lastgroup, match.group(match.lastgroup)
        start = match.start(kind) + 1
        if kind == "name" and text in _KEYWORDS:
            kind = "keyword"
        elif kind == "quoted":
            kind, text = "name", text[1:-1]
        tokens.append(Token(kind, text, start))
        position = match.end()


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = tokenize(query)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def fail(self, expected: str) -> SliceError:
        token = self.current
        found = "end of query" if token.kind == "end" else repr(token.text)
        return SliceError(f"expected {expected} at {token.position}, found {found}")

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.current
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return token
        return None

    def expect(self, kind: str, text: str, expected: str) -> None:
        if self.accept(kind, text) is None:
            raise self.fail(expected)

    def parse(self) -> Node:
        node = self.expression()
        if self.current.kind != "end":
            raise self.fail("'and', 'or' or the end of the query")
        return node

    def expression(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SliceError(f"query nests deeper than {MAX_DEPTH} levels")
        items = [self.conjunction()]
        while self.accept("keyword", "or"):
            items.append(self.conjunction())
        self.depth -= 1
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def conjunction(self) -> Node:
        items = [self.negation()]
        while self.accept("keyword", "and"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def negation(self) -> Node:
        if self.accept("keyword", "not"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise SliceError(f"query nests deeper than {MAX_DEPTH} levels")
            negated = Not(self.negation())
            self.depth -= 1
            return negated
        if self.accept("punct", "("):
            node = self.expression()
            self.expect("punct", ")", "')'")
            return node
        return self.comparison()

    def literal(self) -> Literal | None:
        token = self.current
        if token.kind == "number":
            self.index += 1
            return Literal(float(token.text))
        if token.kind == "string":
            self.index += 1
            return Literal(re.sub(r"\\(.)", r"\1", token.text[1:-1]))
        if token.kind == "keyword" and token.text in ("true", "false"):
            self.index += 1
            return Literal(token.text == "true")
        return None

    def value(self) -> Column | Literal:
        if (token := self.accept("name")) is not None:
            return Column(token.text)
        literal = self.literal()
        if literal is None:
            raise self.fail("a column name or a value")
        return literal

    def comparison(self) -> Node:
        left = self.value()
        if (op := self.accept("op")) is not None:
            return Compare(op.text, left, self.value())
        if self.accept("keyword", "is"):
            negated = self.accept("keyword", "not") is not None
            self.expect("keyword", "null", "'null'")
            return IsNull(left, negated)
        negated = self.accept("keyword", "not") is not None
        if self.accept("keyword", "in"):
            return InList(left, self.options(), negated)
        raise self.fail("'in'" if negated else "a comparison (== != < <= > >=, in, is null)")

    def options(self) -> tuple[float | str | bool, ...]:
        self.expect("punct", "[", "'[' to start a list")
        values: list[float | str | bool] = []
        while True:
            literal = self.literal()
            if literal is None:
                raise self.fail("a value in the list")
            values.append(literal.value)
            if self.accept("punct", "]"):
                return tuple(values)
            self.expect("punct", ",", "',' or ']'")


def parse_query(query: str) -> Node:
    """Parses a slice query; raises ``SliceError`` with the position of the problem."""
    if len(query) > MAX_QUERY_LENGTH:
        raise SliceError(f"query is longer than {MAX_QUERY_LENGTH} characters")
    return _Parser(query).parse()


def columns_used(node: Node) -> set[str]:
    if isinstance(node, BoolOp):
        return set().union(*(columns_used(item) for item in node.items))
    if isinstance(node, Not):
        return columns_used(node.item)
    values = [node.left, node.right] if isinstance(node, Compare) else [node.value]
    return {v.name for v in values if isinstance(v, Column)}


def _is_numeric(series: pd.Series[Any]) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype))


def _check_types(left: Column | Literal, right: Column | Literal, frame: pd.DataFrame) -> None:
    kinds: list[tuple[str, str | None]] = []
    for side in (left, right):
        if isinstance(side, Column):
            kinds.append(("numeric" if _is_numeric(frame[side.name]) else "text", side.name))
        else:
            text = isinstance(side.value, str)
            kinds.append(("text" if text else "numeric", None))
    if kinds[0][1] is None and kinds[1][1] is None:
        raise SliceError("compares two constants; name a column")
    if kinds[0][0] != kinds[1][0]:
        column = kinds[0][1] or kinds[1][1]
        column_kind = kinds[0][0] if kinds[0][1] else kinds[1][0]
        other = "a string" if column_kind == "numeric" else "a number"
        raise SliceError(f"compares {column_kind} column {column!r} with {other}")


def _operand(value: Column | Literal, frame: pd.DataFrame) -> Any:
    return frame[value.name] if isinstance(value, Column) else value.value


def _present(value: Column | Literal, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    if isinstance(value, Column):
        return np.asarray(frame[value.name].notna().to_numpy(), dtype=bool)
    return np.ones(len(frame), dtype=bool)


def evaluate(node: Node, frame: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """The rows of ``frame`` the query selects, as a boolean mask."""
    if isinstance(node, BoolOp):
        masks = [evaluate(item, frame) for item in node.items]
        combine = np.logical_and if node.op == "and" else np.logical_or
        return np.asarray(combine.reduce(masks), dtype=bool)
    if isinstance(node, Not):
        return np.asarray(np.logical_not(evaluate(node.item, frame)), dtype=np.bool_)
    if isinstance(node, IsNull):
        present = _present(node.value, frame)
        return present if node.negated else ~present
    if isinstance(node, InList):
        if isinstance(node.value, Literal):
            raise SliceError("'in' needs a column on its left")
        for option in node.options:
            _check_types(node.value, Literal(option), frame)
        hits = np.asarray(frame[node.value.name].isin(list(node.options)).to_numpy(), dtype=bool)
        present = _present(node.value, frame)
        return (~hits & present) if node.negated else hits
    _check_types(node.left, node.right, frame)
    left, right = _operand(node.left, frame), _operand(node.right, frame)
    result = {
        "==": lambda: left == right,
        "!=": lambda: left != right,
        "<": lambda: left < right,
        "<=": lambda: left <= right,
        ">": lambda: left > right,
        ">=": lambda: left >= right,
    }[node.op]()
    mask = pd.Series(result, dtype="boolean").fillna(False).to_numpy(dtype=bool)
    return np.asarray(
        mask & _present(node.left, frame) & _present(node.right, frame), dtype=np.bool_
    )
