"""Strict loading of annotation files (UTF-8 text, JSON, JSON lines, CSV) and typed fields.

Everything here raises :class:`~leanvl.data.records.AnnotationError` with the file, the
position (line / column for text formats, index or key for JSON containers) and the field, so
a bad record is reported where it enters instead of as a shape error during training.
"""

from __future__ import annotations

import ast
import csv
import functools
import io
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from leanvl.data.records import AnnotationError, MCRecord


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def read_text(path: str | Path) -> str:
    """Read a whole annotation file as UTF-8 text (a leading BOM is dropped).

    Raises:
        AnnotationError: missing file, a folder, zero bytes / only whitespace, or bytes that
            are not UTF-8 (the message gives the line and column of the first bad byte).
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationError(path, None, None, "file not found")
    if not path.is_file():
        raise AnnotationError(path, None, None, "not a file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise AnnotationError(
            path,
            f"line {line}, column {column}",
            None,
            f"not valid UTF-8 (byte 0x{data[err.start]:02x})",
        ) from None
    if not text.strip():
        raise AnnotationError(path, None, None, "empty file")
    return text


def parse_json(path: str | Path, text: str, where: str | None = None, line: int = 1) -> Any:
    """Parse JSON ``text`` from ``path``; duplicate object keys are an error.

    Args:
        path: the file (for messages).
        text: the JSON text.
        where: position prefix for messages (``None``: the text is the whole file).
        line: line number of ``text`` in the file (JSON lines).
    """
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as err:
        raise AnnotationError(
            path,
            f"line {line + err.lineno - 1}, column {err.colno}",
            None,
            f"invalid JSON: {err.msg}",
        ) from None
    except _DuplicateKeyError as err:
        raise AnnotationError(
            path, where or (f"line {line}" if line > 1 else None), err.key, "duplicate key"
        ) from None


def load_json(path: str | Path) -> Any:
    """Read and parse a JSON file (see :func:`read_text` and :func:`parse_json`)."""
    return parse_json(path, read_text(path))


def load_json_list(path: str | Path) -> list[Any]:
    """Read a JSON file whose top level must be a non-empty list."""
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, None, None, f"expected a JSON list, got {_kind(data)}")
    if not data:
        raise AnnotationError(path, None, None, "no records (empty list)")
    return data


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_object)`` for each non-blank line of a JSON-lines file."""
    found = False
    # split on "\n" only: str.splitlines would also split at U+2028 inside JSON strings
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        found = True
        yield number, parse_json(path, line, where=f"line {number}", line=number)
    if not found:  # pragma: no cover - read_text already rejects blank files
        raise AnnotationError(path, None, None, "empty file")


def iter_delimited(
    path: str | Path, delimiter: str, header: bool = True, required: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str] | list[str]]]:
    """Yield ``(line_number, row)`` of a CSV / TSV file (``csv`` module quoting, like pandas).

    Args:
        path: the file.
        delimiter: ``","`` or ``"\\t"``.
        header: the first line names the columns; rows are then dicts.
        required: column names the header must contain.
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    names: list[str] | None = None
    if header:
        names = [name.strip() for name in next(reader)]
        missing = [name for name in required if name not in names]
        if missing:
            raise AnnotationError(
                path,
                "line 1",
                missing[0],
                f"missing column in the header (found: {', '.join(names)})",
            )
    rows = 0
    for row in reader:
        number = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        rows += 1
        if names is None:
            yield number, row
            continue
        if len(row) != len(names):
            raise AnnotationError(
                path, f"line {number}", None, f"expected {len(names)} columns, got {len(row)}"
            )
        yield number, dict(zip(names, row, strict=True))
    if rows == 0:
        raise AnnotationError(path, None, None, "no records (header only)")


def _kind(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "bool", type(None): "null"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if not isinstance(value, dict | list) else kind


_NOT_A_LITERAL = object()


@functools.lru_cache(maxsize=1 << 16)
def parse_literal(text: str) -> Any:
    """``ast.literal_eval`` of ``text`` (lists come back as tuples), cached; never ``eval``.

    Returns a private sentinel (not a tuple) when ``text`` is not a Python literal.

    EgoClip's millions of ``tag_verb`` / ``tag_noun`` cells hold few distinct strings, and
    ``literal_eval`` (a compile per call) dominated reading time before the cache.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_A_LITERAL
    return tuple(value) if isinstance(value, list) else value


class Fields:
    """Typed access to the fields of one record, raising AnnotationError on a bad value.

    Args:
        path: the annotation file.
        where: position of the record (``"line 4"``, ``"index 2"``, ``"key '7'"``).
        record: the parsed record; must be a JSON object (or a CSV row dict).
        prefix: field-name prefix for nested records (``"choices.3."``).
        from_text: the values are CSV strings, so numbers are parsed from text (in JSON a
            number given as a string is an error).
    """

    def __init__(
        self, path: str | Path, where: str, record: Any, prefix: str = "", from_text: bool = False
    ):
        self.path = path if isinstance(path, Path) else Path(path)
        self.where, self.prefix = where, prefix
        self.from_text = from_text
        if not isinstance(record, Mapping):
            raise AnnotationError(
                path, where, prefix.rstrip(".") or None, f"expected an object, got {_kind(record)}"
            )
        self.record = record

    def error(self, name: str | None, message: str) -> AnnotationError:
        """An AnnotationError for field ``name`` of this record."""
        field = f"{self.prefix}{name}" if name else (self.prefix.rstrip(".") or None)
        return AnnotationError(self.path, self.where, field, message)

    def has(self, name: str) -> bool:
        """Whether the record has field ``name`` (a JSON null counts as absent)."""
        return self.record.get(name) is not None

    def raw(self, name: str) -> Any:
        """The value of a required field, any type."""
        if name not in self.record:
            raise self.error(name, "missing field")
        return self.record[name]

    def text(self, name: str, nonempty: bool = False) -> str:
        """A required string field."""
        value = self.raw(name)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        if nonempty and not value.strip():
            raise self.error(name, "empty string")
        return value

    def opt_text(self, name: str) -> str | None:
        """An optional string field (absent or null → None)."""
        return self.text(name) if self.has(name) else None

    def id(self, name: str) -> str:
        """A required id: a non-empty string or an integer, returned as a string."""
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(name, f"expected a string or integer id, got {_kind(value)}")
        if isinstance(value, str) and not value.strip():
            raise self.error(name, "empty id")
        return str(value)

    def integer(self, name: str) -> int:
        """A required integer field (CSV strings are converted; bools are rejected)."""
        value = self.raw(name)
        if isinstance(value, str) and self.from_text:
            try:
                return int(value.strip())
            except ValueError:
                raise self.error(name, f"expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_kind(value)}")
        return value

    def number(self, name: str) -> float:
        """A required finite number (CSV strings are converted)."""
        value = self.raw(name)
        if isinstance(value, str) and self.from_text:
            try:
                value = float(value.strip())
            except ValueError:
                raise self.error(name, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise self.error(name, f"expected a finite number, got {value!r}")
        return float(value)

    def str_list(self, name: str, allow_str: bool = False) -> tuple[str, ...]:
        """A required non-empty list of strings (``allow_str``: a single string is one item)."""
        value = self.raw(name)
        if allow_str and isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            expected = "a string or a list of strings" if allow_str else "a list of strings"
            raise self.error(name, f"expected {expected}, got {_kind(value)}")
        if not value:
            raise self.error(name, "empty list")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{i}]", f"expected a string, got {_kind(item)}")
        return tuple(value)

    def int_list_literal(self, name: str) -> tuple[int, ...]:
        """A list of integers given as a JSON list or a Python-literal string such as ``"[3, 7]"``.

        The string is parsed with :func:`ast.literal_eval` (never ``eval``).
        """
        value = self.raw(name)
        if isinstance(value, str):
            parsed = parse_literal(value.strip())
            if parsed is _NOT_A_LITERAL:
                raise self.error(name, f"expected a list literal like '[3, 7]', got {value!r}")
            value = parsed
        if not isinstance(value, list | tuple):
            raise self.error(name, f"expected a list of integers, got {_kind(value)}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise self.error(name, f"expected a list of integers, got item {item!r}")
        return tuple(value)


class DuplicateCheck:
    """Remembers ids and raises AnnotationError naming both positions of a repeated id."""

    def __init__(self, path: str | Path, field: str):
        self.path, self.field = Path(path), field
        self.seen: dict[str, str] = {}

    def add(self, value: str, where: str) -> None:
        """Record ``value`` seen at ``where``; raise if it was seen before."""
        first = self.seen.setdefault(value, where)
        if first != where:
            raise AnnotationError(
                self.path, where, self.field, f"duplicate id {value!r} (first at {first})"
            )


def media_path(fields: Fields) -> str:
    """The ``"video"`` (or, for image corpora, ``"image"``) path of a Singularity record."""
    if fields.has("video") and fields.has("image"):
        raise fields.error("video", "record has both 'video' and 'image'")
    if fields.has("video") or not fields.has("image"):
        value = fields.raw("video")
        if isinstance(value, list):
            raise fields.error(
                "video", "a list of videos (has_multi_vision_gt) is not supported; one per record"
            )
        return fields.text("video", nonempty=True)
    return fields.text("image", nonempty=True)


def mc_record(fields: Fields, video_field: str, question: bool = False) -> MCRecord:
    """Build an :class:`MCRecord` from a JSON object with ``options`` and an ``answer`` index."""
    options = fields.str_list("options")
    answer = fields.integer("answer")
    if not 0 <= answer < len(options):
        raise fields.error("answer", f"index {answer} out of range for {len(options)} options")
    return MCRecord(
        video=fields.text(video_field, nonempty=True),
        options=options,
        answer=answer,
        type=fields.opt_text("type"),
        question=fields.text("question") if question else fields.opt_text("question"),
    )
