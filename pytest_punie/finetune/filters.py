"""Filters that shape a training set and never drop a line silently.

Each filter takes examples and returns a ``FilterResult``: the kept ones, and a ``Rejection``
with a reason for each removed one. ``run_filters`` chains them, ``retention`` says how much
each step kept, ``write_rejects`` saves what was removed so a person can check it. ``merge`` and
``split`` combine and divide datasets without losing where each line came from.
"""

from __future__ import annotations

import ast
import json
import random
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pytest_punie.finetune.datasets import (
    FORMAT_FAMILIES,
    Example,
    Rejection,
    message_count,
    text_parts,
    write_jsonl,
)

__all__ = [
    "DuplicatesFilter",
    "Filter",
    "FilterResult",
    "LanguageFilter",
    "Python2Filter",
    "QualityFilter",
    "Retention",
    "duplicates",
    "language",
    "merge",
    "python2",
    "python2_constructs",
    "quality",
    "retention",
    "run_filters",
    "split",
    "write_rejects",
]


@dataclass(frozen=True)
class FilterResult:
    """What one filter kept and what it removed (each removal with its reason)."""

    name: str
    kept: list[Example]
    removed: list[Rejection]


class Filter(Protocol):
    """A named step: examples in, a ``FilterResult`` out."""

    @property
    def name(self) -> str: ...

    def __call__(self, examples: Sequence[Example]) -> FilterResult: ...


def _per_example(
    name: str, examples: Sequence[Example], why_remove: Callable[[Example], str | None]
) -> FilterResult:
    kept: list[Example] = []
    removed: list[Rejection] = []
    for example in examples:
        reason = why_remove(example)
        if reason is None:
            kept.append(example)
        else:
            rejection = Rejection(example.source, example.line, reason, example.to_json(), name)
            removed.append(rejection)
    return FilterResult(name, kept, removed)


def run_filters(examples: Sequence[Example], filters: Iterable[Filter]) -> list[FilterResult]:
    """Apply filters in order; each sees what the previous one kept."""
    results: list[FilterResult] = []
    current = list(examples)
    for step in filters:
        result = step(current)
        results.append(result)
        current = result.kept
    return results


class Retention(NamedTuple):
    name: str
    kept: int
    removed: int
    fraction: float


def retention(results: Iterable[FilterResult]) -> list[Retention]:
    """Per filter: kept, removed, and the fraction of its input it kept (1.0 for no input)."""
    rows = []
    for result in results:
        total = len(result.kept) + len(result.removed)
        fraction = len(result.kept) / total if total else 1.0
        rows.append(Retention(result.name, len(result.kept), len(result.removed), fraction))
    return rows


def write_rejects(path: Path | str, rejections: Iterable[Rejection]) -> int:
    """Write one JSON line per rejection (source, line, stage, reason, raw), atomically."""
    return write_jsonl(path, (rejection.to_dict() for rejection in rejections))


# Text helpers ----------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"\b(?:https?://|www\.)\S+")
# File names and paths (config/index.md, todo.txt): they are words of no language.
_PATH = re.compile(r"[\w.~-]*[/\\][\w./\\~-]*|\b[\w-]+(?:\.[\w-]+)*\.[A-Za-z][A-Za-z0-9]{0,4}\b")
_WORD = re.compile(r"[^\W\d_]+")
_PYTHON_FENCES = frozenset({"", "python", "py", "python2", "python3", "py2", "py3"})


def _prose(text: str) -> str:
    """Text with code blocks, inline code, URLs and file paths taken out."""
    return _PATH.sub(" ", _URL.sub(" ", _INLINE_CODE.sub(" ", _FENCE.sub(" ", text))))


# Language --------------------------------------------------------------------------------------

# The most frequent English function words; English prose has roughly 40% of these, other
# Latin-script languages a few percent (their "a", "in", "on" and the like).
ENGLISH_STOPWORDS = frozenset(
    """a about after all also an and any are as at be because been but by can could did do does
    for from had has have he her here him his how i if in into is it its just like may me more
    most my no not now of on one only or other our out over she should so some than that the
    their them then there these they this to up us was we were what when where which while who
    why will with would you your""".split()
)


@dataclass(frozen=True)
class LanguageFilter:
    """Keep examples whose prose looks English.

    The heuristic looks at the prose: every message except tool calls, tool results and
    messages that parse as Python as a whole, with code blocks, inline code, URLs and file
    paths removed.
    At least ``min_ascii_letters`` of its letters must be ASCII (other scripts fail here) and,
    when it has at least ``min_words`` words, at least ``min_stopwords`` of them must be common
    English function words (French, German, Spanish, ... fail here). Text without letters, such
    as a bare number, passes.
    """

    language: str = "en"
    min_ascii_letters: float = 0.9
    min_stopwords: float = 0.1
    min_words: int = 6

    def __post_init__(self) -> None:
        if self.language != "en":
            raise ValueError(f"language {self.language!r} is not supported; only 'en' is")

    @property
    def name(self) -> str:
        return f"language={self.language}"

    def why_remove(self, example: Example) -> str | None:
        prose = "\n".join(
            _prose(text)
            for role, text in text_parts(example)
            if role not in ("tool", "tool_call") and not _is_code(text)
        )
        words = _WORD.findall(prose)
        letters = sum(len(word) for word in words)
        if not letters:
            return None
        ascii_share = sum(c.isascii() for word in words for c in word) / letters
        if ascii_share < self.min_ascii_letters:
            return (
                f"not English: {1 - ascii_share:.0%} of letters are not ASCII "
                f"(at most {1 - self.min_ascii_letters:.0%} allowed)"
            )
        if len(words) >= self.min_words:
            hits = sum(word.lower() in ENGLISH_STOPWORDS for word in words) / len(words)
            if hits < self.min_stopwords:
                return (
                    f"not English: {hits:.0%} of {len(words)} words are common English words "
                    f"(at least {self.min_stopwords:.0%} needed)"
                )
        return None

    def __call__(self, examples: Sequence[Example]) -> FilterResult:
        return _per_example(self.name, examples, self.why_remove)


def language(code: str = "en") -> LanguageFilter:
    """Keep examples written in ``code`` (only English, "en", is supported)."""
    return LanguageFilter(code)


# Python 2 --------------------------------------------------------------------------------------

# Each rewrite turns one Python 2 construct into its Python 3 spelling. Code that does not parse
# as Python 3 but does after these rewrites is Python 2 code.
_Replacement = str | Callable[[re.Match[str]], str]
_PY2_REWRITES: list[tuple[str, re.Pattern[str], _Replacement]] = [
    (
        "print >> statement",
        re.compile(r"^([ \t]*)print[ \t]*>>[ \t]*([^,\n]+),[ \t]*(.+?),?[ \t]*$", re.M),
        r"\1print(\3, file=\2)",
    ),
    (
        "print statement",
        re.compile(r"^([ \t]*)print(?:[ \t]+(?![(=.\[])(.+?))?,?[ \t]*$", re.M),
        lambda match: f"{match.group(1)}print({match.group(2) or ''})",
    ),
    ("exec statement", re.compile(r"^([ \t]*)exec[ \t]+(?![(=])(.+?)[ \t]*$", re.M), r"\1exec(\2)"),
    (
        "except E, e",
        re.compile(r"\bexcept[ \t]+(\([^)]*\)|[\w.]+)[ \t]*,[ \t]*(\w+)[ \t]*:"),
        r"except \1 as \2:",
    ),
    (
        "raise E, message",
        re.compile(r"^([ \t]*)raise[ \t]+([\w.]+)[ \t]*,[ \t]*(.+?)[ \t]*$", re.M),
        r"\1raise \2(\3)",
    ),
    ("backtick repr", re.compile(r"`([^`\n]+)`"), r"repr(\1)"),
    ("<> operator", re.compile(r"<>"), "!="),
    ("ur'' string", re.compile(r"\b[uU][rR](?=['\"])"), "r"),
    ("long literal", re.compile(r"\b(\d+)[lL]\b"), r"\1"),
    ("octal literal 0777", re.compile(r"(?<![\w.])0([0-7]+)\b"), r"0o\1"),
]
# Found in code that fails to parse, these could also be dates or numbers inside strings: they
# only count when the rewritten code parses.
_WEAK_CONSTRUCTS = frozenset({"long literal", "octal literal 0777"})
# Python 3 code that still calls Python 2 names (parses, then fails at run time).
_PY2_NAMES = frozenset(
    {"xrange", "raw_input", "unichr", "basestring", "execfile", "unicode", "long", "cmp"}
)
_PY2_METHODS = frozenset({"has_key", "iteritems", "iterkeys", "itervalues"})


def _parse(code: str) -> ast.Module | None:
    """The syntax tree of Python 3 code, or None when it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not our business
            return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _is_code(text: str) -> bool:
    """Bare Python code: it parses, and is more than one word or number (which also parse)."""
    tree = _parse(text)
    if tree is None or not tree.body:
        return False
    statement = tree.body[0] if len(tree.body) == 1 else None
    return not (
        isinstance(statement, ast.Expr) and isinstance(statement.value, (ast.Name, ast.Constant))
    )


def _rewrite_python2(code: str) -> tuple[str, list[str]]:
    found: list[str] = []
    for construct, pattern, replacement in _PY2_REWRITES:
        code, count = pattern.subn(replacement, code)
        if count:
            found.append(construct)
    return code, found


def _is_print(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "print"


def _python2_names(tree: ast.Module) -> list[str]:
    """Python 2-only builtins and dict methods used by code that parses as Python 3, unless the
    code defines them itself (``xrange = range`` compatibility shims)."""
    bound: set[str] = set()
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif node.id in _PY2_NAMES:
                used.append(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Attribute) and node.attr in _PY2_METHODS:
            used.append(f".{node.attr}()")
        elif isinstance(node, ast.Expr) and _is_print(node.value):
            used.append("print statement")  # a bare ``print``: Python 2's empty line
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
            if _is_print(node.left):
                used.append("print >> statement")  # parses as a shift in Python 3
    return sorted({name for name in used if name not in bound})


def python2_constructs(code: str, *, fenced: bool = True) -> list[str]:
    """The Python 2 constructs in ``code``; empty when it is not (recognisably) Python 2.

    Code that parses as Python 3 is only flagged for Python 2-only names (``xrange``,
    ``dict.has_key`` ...). Code that does not parse is Python 2 when rewriting its Python 2
    constructs makes it parse. Inside a ```python fence a clear construct (a print statement,
    ``except E, e``, backticks, ``<>``, ``ur''``) is enough, since the text is known to be code;
    outside one, a single line that parses once rewritten is (``print total``, not ``print the
    total``), and a lone word such as ``long`` is prose.
    """
    tree = _parse(code)
    if tree is not None:
        return _python2_names(tree) if fenced or _is_code(code) else []
    rewritten, found = _rewrite_python2(code)
    if found and _parse(rewritten) is not None:
        return found
    if fenced:
        return [construct for construct in found if construct not in _WEAK_CONSTRUCTS]
    for line in code.splitlines():  # prose around bare code: try its lines ("print total")
        line_found = python2_constructs(line.strip(), fenced=True) if line.strip() else []
        if line_found and _parse(_rewrite_python2(line.strip())[0]) is not None:
            return line_found
    return []


def _code_candidates(text: str) -> list[tuple[str, bool]]:
    """(code, fenced) pieces of a message: Python fences, or the whole text if it has none."""
    fences = _FENCE.findall(text)
    if fences:
        return [(code, True) for lang, code in fences if lang.lower() in _PYTHON_FENCES]
    return [(text, False)]


@dataclass(frozen=True)
class Python2Filter:
    """Remove examples with Python 2 code (in ```python fences or bare): the old data taught
    ``print x`` to a model that must write Python 3."""

    @property
    def name(self) -> str:
        return "python2"

    def why_remove(self, example: Example) -> str | None:
        for role, text in text_parts(example):
            if role in ("tool", "tool_call"):
                continue
            for code, fenced in _code_candidates(text):
                if constructs := python2_constructs(code, fenced=fenced):
                    where = "" if role == "text" else f" in {role} text"
                    return f"Python 2 code{where}: {', '.join(constructs)}"
        return None

    def __call__(self, examples: Sequence[Example]) -> FilterResult:
        return _per_example(self.name, examples, self.why_remove)


def python2() -> Python2Filter:
    """Remove examples containing Python 2 code."""
    return Python2Filter()


# Quality ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityFilter:
    """Bounds on the number of messages and on the characters of all text in an example."""

    min_messages: int | None = None
    max_messages: int | None = None
    min_chars: int | None = None
    max_chars: int | None = None

    @property
    def name(self) -> str:
        bounds = [f"{key}={value}" for key, value in vars(self).items() if value is not None]
        return f"quality({', '.join(bounds)})"

    def why_remove(self, example: Example) -> str | None:
        messages = message_count(example)
        chars = sum(len(text) for _, text in text_parts(example))
        if self.min_messages is not None and messages < self.min_messages:
            return f"{messages} messages, fewer than min_messages {self.min_messages}"
        if self.max_messages is not None and messages > self.max_messages:
            return f"{messages} messages, more than max_messages {self.max_messages}"
        if self.min_chars is not None and chars < self.min_chars:
            return f"{chars} characters, fewer than min_chars {self.min_chars}"
        if self.max_chars is not None and chars > self.max_chars:
            return f"{chars} characters, more than max_chars {self.max_chars}"
        return None

    def __call__(self, examples: Sequence[Example]) -> FilterResult:
        return _per_example(self.name, examples, self.why_remove)


def quality(
    *,
    min_messages: int | None = None,
    max_messages: int | None = None,
    min_chars: int | None = None,
    max_chars: int | None = None,
) -> QualityFilter:
    """Remove examples outside the given message-count and character bounds."""
    return QualityFilter(min_messages, max_messages, min_chars, max_chars)


# Duplicates ------------------------------------------------------------------------------------


def _normalised(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class DuplicatesFilter:
    """Remove exact duplicates (after collapsing whitespace); the first occurrence stays.

    Run over all splits together, this also removes test lines that repeat training lines.
    """

    @property
    def name(self) -> str:
        return "duplicates"

    def __call__(self, examples: Sequence[Example]) -> FilterResult:
        first: dict[str, Example] = {}

        def why_remove(example: Example) -> str | None:
            key = json.dumps(_normalised(example.data), sort_keys=True, ensure_ascii=False)
            original = first.setdefault(key, example)
            return None if original is example else f"duplicate of {original.location}"

        return _per_example(self.name, examples, why_remove)


def duplicates() -> DuplicatesFilter:
    """Remove later copies of the same conversation."""
    return DuplicatesFilter()


# Merge and split -------------------------------------------------------------------------------


def merge(datasets: Iterable[Iterable[Example]]) -> list[Example]:
    """Concatenate datasets in order; every example keeps its source, line and origin.

    Raises ``ValueError`` when they mix formats mlx_lm cannot read from one file (chat and
    tools lines mix; completions or text lines do not mix with them).
    """
    merged: list[Example] = []
    for dataset in datasets:
        merged.extend(dataset)
    families = {FORMAT_FAMILIES.get(ex.format, ex.format): ex for ex in reversed(merged)}
    if len(families) > 1:
        shown = ", ".join(f"{family} ({ex.location})" for family, ex in sorted(families.items()))
        raise ValueError(f"cannot merge different formats into one file: {shown}")
    return merged


def _split_sizes(total: int, fractions: Sequence[float]) -> list[int]:
    """Sizes by largest remainder; a split with a positive fraction gets at least one example
    while the others can spare one."""
    exact = [total * fraction for fraction in fractions]
    sizes = [int(value) for value in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (sizes[i] - exact[i], i))
    for index in by_remainder[: total - sum(sizes)]:
        sizes[index] += 1
    for index, fraction in enumerate(fractions):
        if fraction > 0 and sizes[index] == 0:
            donor = max(range(len(sizes)), key=lambda i: sizes[i])
            if sizes[donor] > 1:
                sizes[donor] -= 1
                sizes[index] += 1
    return sizes


def split(
    examples: Sequence[Example],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, list[Example]]:
    """Divide examples into train, valid and test by a seeded shuffle.

    Deterministic for the same examples, fractions and seed; every example lands in exactly
    one split, and each split keeps the input order.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1: {fractions}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    sizes = _split_sizes(len(examples), fractions)
    splits: dict[str, list[Example]] = {}
    start = 0
    for name, size in zip(("train", "valid", "test"), sizes, strict=True):
        chosen = sorted(order[start : start + size])
        splits[name] = [examples[index] for index in chosen]
        start += size
    return splits
