"""Training data on disk: mlx_lm's JSONL formats, importers from other layouts, provenance.

``mlx_lm lora`` reads ``train.jsonl``, ``valid.jsonl`` and ``test.jsonl`` from a folder, one JSON
object per line, in one of four formats (https://github.com/ml-explore/mlx-lm, LORA.md):

- ``chat``: ``{"messages": [{"role": ..., "content": ...}, ...]}``
- ``tools``: ``chat`` plus ``"tools": [OpenAI tool schemas]``; assistant messages may carry
  structured ``"tool_calls"`` and ``"tool"`` messages hold their results
- ``completions``: ``{"prompt": ..., "completion": ...}``
- ``text``: ``{"text": ...}``

Every parsed line is an ``Example`` that remembers where it came from (file and line, and for
imported or rewritten data its first origin), so a problem found three steps later still points
at the line a person can open and fix. Files written here get a ``*.provenance.jsonl`` sidecar
with that origin per line; mlx_lm only reads the split files, so the sidecar never reaches it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pytest_punie.system.files import atomic_writer

__all__ = [
    "FORMATS",
    "FORMAT_FAMILIES",
    "HF_PREFIX",
    "IMPORTERS",
    "MESSAGE_KEYS",
    "ROLES",
    "SPLITS",
    "DatasetError",
    "Example",
    "Imported",
    "Line",
    "Rejection",
    "arguments_object",
    "dataset_files",
    "dataset_hash",
    "detect_format",
    "import_alpaca",
    "import_file",
    "import_openai",
    "import_sharegpt",
    "load_dataset",
    "message_count",
    "parse_json",
    "provenance_path",
    "read_lines",
    "read_provenance",
    "text_parts",
    "write_examples",
    "write_jsonl",
]

FORMATS = ("chat", "tools", "completions", "text")
SPLITS = ("train", "valid", "test")
ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name"})
# mlx_lm reads a whole file in the format of its first line; chat and tools lines both load as its
# ChatDataset, so they may share a file, the other formats may not.
FORMAT_FAMILIES = {"chat": "chat", "tools": "chat", "completions": "completions", "text": "text"}
HF_PREFIX = "hf://"


class DatasetError(Exception):
    """A whole file cannot be used: not JSON, not a list of records, no split files, ..."""


class Line(NamedTuple):
    """One raw line of a JSONL file; ``number`` is 1-based."""

    source: Path
    number: int
    text: str


@dataclass(frozen=True)
class Example:
    """A valid line: its parsed JSON, its format, and where it came from.

    ``origin`` is where the data first came from when that is not ``source:line``: the record of
    an imported file (``"sharegpt:raw/chats.json:12"``) or the line a rewritten file copied.
    """

    data: dict[str, Any]
    format: str
    source: Path
    line: int
    origin: str | None = None

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def provenance(self) -> str:
        """The first known origin of this example."""
        return self.origin or self.location

    def to_json(self) -> str:
        return json.dumps(self.data, ensure_ascii=False)


@dataclass(frozen=True)
class Rejection:
    """A line that was not kept, and why. ``stage`` says who rejected it (validation, a filter,
    an importer)."""

    source: Path
    line: int
    reason: str
    raw: str
    stage: str = "validate"

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "line": self.line,
            "stage": self.stage,
            "reason": self.reason,
            "raw": self.raw,
        }


def detect_format(data: Mapping[str, Any]) -> str | None:
    """The mlx_lm format of one parsed line, checked in mlx_lm's order; None if none fits."""
    if "prompt" in data and "completion" in data:
        return "completions"
    if "messages" in data:
        return "tools" if "tools" in data else "chat"
    if "text" in data:
        return "text"
    return None


# Reading ---------------------------------------------------------------------------------------


def parse_json(text: str) -> Any:
    """``json.loads`` that fails only with ``json.JSONDecodeError``, for every text mlx_lm cannot
    read either (an integer of more than 4300 digits raises a plain ValueError in Python)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc).split(";")[0], text, 0) from None


def read_lines(path: Path | str) -> Iterator[Line]:
    """Yield every line of a JSONL file, blank ones included (mlx_lm fails on those too).

    Bytes that are not UTF-8 are kept as surrogate escapes, so validation can report them.
    """
    source = Path(path)
    with open(source, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            text = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="surrogateescape")
            yield Line(source, number, text)


def dataset_files(path: Path | str) -> list[Path]:
    """The JSONL files a path stands for: a folder's split files, or the file itself.

    Raises ``FileNotFoundError`` for a missing path and ``DatasetError`` for a folder without
    any of ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``.
    """
    path = Path(path)
    if path.is_dir():
        files = [path / f"{split}.jsonl" for split in SPLITS if (path / f"{split}.jsonl").is_file()]
        if not files:
            raise DatasetError(f"{path}: no train.jsonl, valid.jsonl or test.jsonl in this folder")
        return files
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return [path]


def load_dataset(path: Path | str) -> dict[str, list[Line]]:
    """Read a dataset folder (split name -> its lines) or one JSONL file (its stem -> lines)."""
    return {file.stem: list(read_lines(file)) for file in dataset_files(path)}


# Writing ---------------------------------------------------------------------------------------


def write_jsonl(path: Path | str, rows: Iterable[Example | Mapping[str, Any]]) -> int:
    """Write rows as JSONL atomically (``system.files.atomic_writer``); return the count.

    An ``Example`` is written as its data only, so the file is exactly what mlx_lm expects.
    """
    count = 0
    with atomic_writer(path) as stream:
        for row in rows:
            data = row.data if isinstance(row, Example) else row
            stream.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def provenance_path(path: Path | str) -> Path:
    """The sidecar holding the origin of each line of ``path``: ``train.provenance.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.provenance.jsonl")


def write_examples(path: Path | str, examples: Sequence[Example]) -> int:
    """Write examples for mlx_lm, and their origins to the provenance sidecar."""
    count = write_jsonl(path, examples)
    write_jsonl(
        provenance_path(path),
        ({"line": n, "origin": ex.provenance} for n, ex in enumerate(examples, start=1)),
    )
    return count


def read_provenance(path: Path | str) -> dict[int, str]:
    """Line number -> origin from the sidecar of ``path``; empty when there is none or it is
    unreadable (provenance is a help, never a reason to refuse data)."""
    sidecar = provenance_path(path)
    origins: dict[int, str] = {}
    if not sidecar.is_file():
        return origins
    try:
        for line in read_lines(sidecar):
            record = parse_json(line.text)
            if isinstance(record, dict) and isinstance(record.get("origin"), str):
                origins[int(record["line"])] = record["origin"]
    except (ValueError, KeyError, TypeError, OSError):
        return {}
    return origins


def dataset_hash(paths: Iterable[Path | str]) -> str:
    """sha256 (hex) over the names and contents of the dataset files, in name order.

    A folder contributes its split files, named ``train.jsonl`` etc.; a file its own name.
    Provenance sidecars are not hashed: the same training data gives the same hash.
    """
    entries: list[tuple[str, bytes]] = []
    for path in paths:
        entries.extend((file.name, file.read_bytes()) for file in dataset_files(path))
    digest = hashlib.sha256()
    for name, content in sorted(entries, key=lambda entry: (entry[0], entry[1])):
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


# Looking inside an example ----------------------------------------------------------------------


def text_parts(example: Example) -> list[tuple[str, str]]:
    """(role, text) for every piece of text the model reads or writes in a valid example.

    A tool call is the JSON of its function with the role "tool_call"; ``text`` lines have the
    role "text".
    """
    data = example.data
    if example.format == "completions":
        return [("user", data["prompt"]), ("assistant", data["completion"])]
    if example.format == "text":
        return [("text", data["text"])]
    parts: list[tuple[str, str]] = []
    for message in data["messages"]:
        if isinstance(message.get("content"), str):
            parts.append((message["role"], message["content"]))
        for call in message.get("tool_calls") or ():
            parts.append(("tool_call", json.dumps(call.get("function"), ensure_ascii=False)))
    return parts


def message_count(example: Example) -> int:
    """Messages in a chat example; a completion counts as two, a text line as one."""
    if example.format == "completions":
        return 2
    if example.format == "text":
        return 1
    return len(example.data["messages"])


# Importers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    """What an importer made of a file: mlx_lm chat/tools examples, and the records it could
    not convert (each with its record number and why)."""

    examples: list[Example]
    rejections: list[Rejection]


class _Unconvertible(ValueError):
    """One record that an importer cannot turn into a conversation."""


def _records(path: Path | str) -> Iterator[tuple[Path, int, str, Any]]:
    """(source, record number, raw text, parsed record or the exception) for a JSON list file,
    a JSONL file or an ``hf://org/name`` dataset. Blank JSONL lines are not records."""
    if str(path).startswith(HF_PREFIX):
        yield from _hf_records(str(path))
        return
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if path.suffix.lower() != ".jsonl":
        try:
            document = parse_json(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # several JSON values: JSONL under a .json name
                raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
        else:
            if not isinstance(document, list):
                raise DatasetError(
                    f"{path}: expected a JSON list of records, got {type(document).__name__}"
                )
            for number, item in enumerate(document, start=1):
                yield path, number, json.dumps(item, ensure_ascii=False), item
            return
    for line in read_lines(path):
        if not line.text.strip():
            continue
        try:
            record: Any = parse_json(line.text)
        except json.JSONDecodeError as exc:
            record = exc
        yield path, line.number, line.text, record


def _hf_records(spec: str) -> Iterator[tuple[Path, int, str, Any]]:
    """Records of the ``train`` split of a Hugging Face dataset (needs ``datasets`` and network)."""
    name = spec.removeprefix(HF_PREFIX)
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(
            f"{spec}: reading a Hugging Face dataset needs the 'datasets' package "
            "(pip install datasets) and network access to the Hub; or download it as JSON/JSONL "
            "and import that file"
        ) from exc
    try:
        rows = datasets.load_dataset(name, split="train")
    except Exception as exc:  # network, authentication, unknown name: all end here
        raise DatasetError(f"{spec}: cannot load the dataset ({exc})") from exc
    source = Path(name)
    for number, row in enumerate(rows, start=1):
        yield source, number, json.dumps(row, ensure_ascii=False, default=str), dict(row)


def _import(
    path: Path | str,
    kind: str,
    convert: Callable[[Any], dict[str, Any]],
) -> Imported:
    examples: list[Example] = []
    rejections: list[Rejection] = []
    for source, number, raw, record in _records(path):
        try:
            if isinstance(record, json.JSONDecodeError):
                raise _Unconvertible(f"broken JSON: {record.msg} (column {record.colno})")
            if not isinstance(record, dict):
                raise _Unconvertible(f"record is a {type(record).__name__}, not an object")
            data = convert(record)
        except _Unconvertible as exc:
            rejections.append(Rejection(source, number, str(exc), raw, stage=f"import {kind}"))
            continue
        fmt = detect_format(data) or "chat"
        origin = f"{kind}:{path}:{number}"
        examples.append(Example(data, fmt, source, number, origin))
    return Imported(examples, rejections)


_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function_response": "tool",
    "function_call": "assistant",
}


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Unconvertible(f"{what} must be a string, not {type(value).__name__}")
    return value


def _tools_field(value: Any) -> list[Any]:
    """ShareGPT/OpenAI ``tools``: a list, or a JSON string of one; bare function schemas are
    wrapped in OpenAI's ``{"type": "function", "function": ...}``."""
    if isinstance(value, str):
        try:
            value = parse_json(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise _Unconvertible(f"'tools' is a string but not JSON ({exc.msg})") from exc
    if not isinstance(value, list):
        raise _Unconvertible(f"'tools' must be a list, not {type(value).__name__}")
    return [
        {"type": "function", "function": tool}
        if isinstance(tool, dict) and "function" not in tool and "name" in tool
        else tool
        for tool in value
    ]


def _call_from_text(value: str, turn: int) -> dict[str, Any]:
    try:
        call = parse_json(value)
    except json.JSONDecodeError as exc:
        raise _Unconvertible(f"function_call in turn {turn} is not JSON ({exc.msg})") from exc
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise _Unconvertible(f"function_call in turn {turn} has no name")
    return {
        "type": "function",
        "function": {
            "name": call["name"],
            "arguments": arguments_object(call.get("arguments", {})),
        },
    }


def arguments_object(value: Any) -> Any:
    """Tool-call arguments as a JSON object, not a JSON string: chat templates such as Qwen2.5's
    render ``arguments | tojson``, which would teach the model a quoted string."""
    if isinstance(value, str):
        try:
            parsed = parse_json(value)
        except json.JSONDecodeError:
            return value  # left as it is; validation reports it
        return parsed if isinstance(parsed, dict) else value
    return value


def _from_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    turns = record.get("conversations", record.get("conversation"))
    if not isinstance(turns, list):
        raise _Unconvertible("no 'conversations' list")
    messages: list[dict[str, Any]] = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"]})
    for turn_number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise _Unconvertible(f"turn {turn_number} is not an object")
        speaker = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        role = _SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise _Unconvertible(f"unknown speaker {speaker!r} in turn {turn_number}")
        text = _string(value, f"value of turn {turn_number}")
        if speaker == "function_call":
            messages.append(
                {"role": "assistant", "tool_calls": [_call_from_text(text, turn_number)]}
            )
        else:
            messages.append({"role": role, "content": text})
    data: dict[str, Any] = {"messages": messages}
    if record.get("tools"):
        data["tools"] = _tools_field(record["tools"])
    return data


def _from_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    for key in ("instruction", "output"):
        if key not in record:
            raise _Unconvertible(f"no {key!r}")
    instruction = _string(record["instruction"], "'instruction'")
    extra = _string(record.get("input") or "", "'input'")
    output = _string(record["output"], "'output'")
    messages: list[dict[str, Any]] = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"]})
    for pair_number, pair in enumerate(record.get("history") or [], start=1):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise _Unconvertible(f"history entry {pair_number} is not a [prompt, answer] pair")
        messages.append({"role": "user", "content": _string(pair[0], "history prompt")})
        messages.append({"role": "assistant", "content": _string(pair[1], "history answer")})
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages.append({"role": "user", "content": prompt})
    messages.append({"role": "assistant", "content": output})
    return {"messages": messages}


def _from_openai(record: dict[str, Any]) -> dict[str, Any]:
    """OpenAI fine-tuning lines, kept to the keys mlx_lm's chat templates read.

    Dropped: top-level keys other than ``messages``/``tools`` (``parallel_tool_calls``, ids)
    and message keys such as ``weight``, which mlx_lm cannot express.
    """
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise _Unconvertible("no 'messages' list")
    converted: list[Any] = []
    for message in messages:
        if not isinstance(message, dict):
            converted.append(message)  # validation says what is wrong with it
            continue
        kept = {key: value for key, value in message.items() if key in MESSAGE_KEYS}
        if isinstance(kept.get("tool_calls"), list):
            kept["tool_calls"] = [_openai_call(call) for call in kept["tool_calls"]]
        if kept.get("content") is None and kept.get("tool_calls"):
            kept.pop("content", None)
        converted.append(kept)
    data: dict[str, Any] = {"messages": converted}
    if record.get("tools"):
        data["tools"] = _tools_field(record["tools"])
    return data


def _openai_call(call: Any) -> Any:
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        function = dict(call["function"])
        if "arguments" in function:
            function["arguments"] = arguments_object(function["arguments"])
        return {**call, "function": function}
    return call


def import_sharegpt(path: Path | str) -> Imported:
    """Convert ShareGPT (``{"conversations": [{"from": "human"|"gpt"|..., "value": ...}]}``)."""
    return _import(path, "sharegpt", _from_sharegpt)


def import_alpaca(path: Path | str) -> Imported:
    """Convert Alpaca (``{"instruction", "input", "output"}``; optional system and history)."""
    return _import(path, "alpaca", _from_alpaca)


def import_openai(path: Path | str) -> Imported:
    """Convert OpenAI chat fine-tuning data (``{"messages": [...], "tools": [...]}``)."""
    return _import(path, "openai", _from_openai)


IMPORTERS: dict[str, Callable[[Path | str], Imported]] = {
    "sharegpt": import_sharegpt,
    "alpaca": import_alpaca,
    "openai": import_openai,
}


def import_file(path: Path | str, kind: str) -> Imported:
    """Import ``path`` (a JSON list, JSONL, or ``hf://org/name``) in the layout ``kind``."""
    try:
        importer = IMPORTERS[kind]
    except KeyError:
        choices = ", ".join(IMPORTERS)
        raise ValueError(f"unknown import format {kind!r}; choose from {choices}") from None
    return importer(path)
