"""Loading a spec from YAML with errors that point at file:line and the field path, never a traceback."""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError

from a3cli.errors import SpecError
from a3cli.spec._models import Spec
from a3cli.spec._yaml import _LOADER, MAX_SPEC_BYTES, YamlLimitError, check_yaml_limits

Loc = tuple[str | int, ...]


class SpecIssue(BaseModel):
    """One problem found in a spec. `line` and `column` are 1-based; None when the place cannot be pinned down."""

    severity: Literal["error", "warning"] = "error"
    file: str
    line: int | None = None
    column: int | None = None
    path: str = Field("", description="Dotted field path, e.g. judges.harmful.prompt.user_template.")
    message: str

    def render(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "") + (f":{self.column}" if self.line and self.column else "")
        field = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity}:{field} {self.message}"


class SpecLoadError(SpecError):
    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        count = len(issues)
        super().__init__(f"{count} problem{'s' * (count != 1)} in the spec:\n" + "\n".join(i.render() for i in issues))


class _Positions:
    """Line/column of every key and value in a YAML document, by path."""

    def __init__(self) -> None:
        self.value: dict[Loc, tuple[int, int]] = {}
        self.key: dict[Loc, tuple[int, int]] = {}
        self.duplicates: list[tuple[Loc, tuple[int, int]]] = []

    def walk(self, node: yaml.Node, loc: Loc = ()) -> None:
        self.value[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*loc, key)
                mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in seen:
                    self.duplicates.append((child, mark))
                seen.add(key)
                self.key[child] = mark
                self.walk(value_node, child)
                if isinstance(value_node, (yaml.MappingNode, yaml.SequenceNode)):
                    # A block starts on the line after its key; people look for the key.
                    self.value[child] = mark
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*loc, index))

    def find(self, loc: Loc, *, prefer_key: bool = False) -> tuple[int, int] | None:
        """Position of the deepest existing prefix of `loc` (pydantic locs contain union tags YAML does not have)."""
        path: Loc = ()
        best = self.value.get(())
        for part in loc:
            candidate = (*path, part)
            if candidate in self.value:
                path = candidate
                best = (self.key.get(path) if prefer_key else None) or self.value[path]
        return best


def _clean_loc(loc: Loc, data: Any) -> Loc:
    """Drop the discriminator tags pydantic inserts (the 'llm' in judges.harmful.llm.prompt)."""
    out: Loc = ()
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        out = (*out, part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return out


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation can hold (through Optional, list, Annotated unions)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return [m for arg in typing.get_args(annotation) for m in _unwrap(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _fields_at(loc: Loc, data: Any) -> list[str]:
    """Field names allowed at `loc` (for "did you mean")."""
    models: list[type[BaseModel]] = [Spec]
    node = data
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        nxt: list[type[BaseModel]] = []
        for model in models:
            field = model.model_fields.get(str(part))
            if field is not None:
                nxt += _unwrap(field.annotation)
        node = node.get(part) if isinstance(node, dict) else None
        # Pick the union member whose `type` tag matches what the user wrote.
        if isinstance(node, dict) and "type" in node and len(nxt) > 1:
            tagged = [m for m in nxt if "type" in m.model_fields and node["type"] in typing.get_args(m.model_fields["type"].annotation)]
            nxt = tagged or nxt
        models = nxt
        if not models:
            return []
    return sorted({name for model in models for name in model.model_fields})


def _message(error: dict[str, Any], data: Any, loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _fields_at(loc[:-1], data)
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if not close:
            # A setting put one level too high, e.g. `temperature` directly under `target` instead of `target.generate`.
            nested = {f"{field}.{sub}": sub for field in allowed for sub in _fields_at((*loc[:-1], field), data)}
            match = difflib.get_close_matches(key, list(nested.values()), n=1, cutoff=0.75)
            close = [next(path for path, sub in nested.items() if sub == match[0])] if match else []
        hint = f"; did you mean `{close[0]}`?" if close else (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        return f"unknown field `{key}`{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        close = difflib.get_close_matches(str(ctx.get("tag", "")), expected, n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return f"unknown type `{ctx.get('tag')}`; expected one of {', '.join(expected)}{hint}"
    if kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        return f"may contain only {_PATTERN_WORDS.get(pattern, 'the characters allowed here')}"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, not {_describe(_value_at(data, loc))}"
    msg = error["msg"]
    # pydantic prefixes our ValueErrors with "Value error, "; the rest of its messages never include the input value.
    return msg.removeprefix("Value error, ")


_PATTERN_WORDS = {r"^[a-z0-9][a-z0-9_\-]*$": "lower-case letters, digits, `-` and `_`, starting with a letter or a digit"}
_TYPE_WORDS = {
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "text", "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping (key: value pairs)",
    "model_type": "a mapping (key: value pairs)", "model_attributes_type": "a mapping (key: value pairs)",
}
_MISSING = object()


def _value_at(data: Any, loc: Loc) -> Any:
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            node = node[part]
        else:
            return _MISSING
    return node


def _describe(value: Any) -> str:
    """What the user wrote, by kind. Numbers and booleans are shown; text never is (it might be a pasted key)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value!r}"
    if value is None:
        return "empty (null)"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a value of another kind"


def _issues_from_validation(err: ValidationError, data: Any, positions: _Positions, file: str) -> list[SpecIssue]:
    issues = []
    for error in err.errors(include_input=False, include_url=False):
        loc = _clean_loc(tuple(error["loc"]), data)
        pos = positions.find(loc, prefer_key=error["type"] in ("extra_forbidden",))
        issues.append(
            SpecIssue(
                file=file,
                line=pos[0] if pos else None,
                column=pos[1] if pos else None,
                path=".".join(str(p) for p in loc),
                message=_message(error, data, loc),
            )
        )
    return issues


def compose_spec(text: str, file: str = "<spec>") -> yaml.Node | None:
    """The YAML node tree of a spec's text, after the hostile-input limits (size, depth, alias expansion, tags)."""
    try:
        check_yaml_limits(text)
    except YamlLimitError as e:
        raise SpecLoadError([SpecIssue(file=file, line=e.line, column=e.column, message=e.message)]) from None
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise SpecLoadError([_yaml_issue(e, file, text)]) from None


def _yaml_issue(e: yaml.YAMLError, file: str, text: str) -> SpecIssue:
    if isinstance(e, yaml.reader.ReaderError):  # a character YAML forbids: it carries a position, not a mark
        before = text[: e.position]
        line, column = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "\0")
        return SpecIssue(file=file, line=line, column=column, message=f"not valid YAML: the control character #x{code:04x} is not allowed")
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return SpecIssue(file=file, line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None, message=f"not valid YAML: {problem}")


def _construct(node: yaml.Node) -> Any:
    """Plain Python data from a composed node (the safe constructor; tags were checked before composing)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_spec_text(text: str, file: str = "<spec>") -> Spec:
    """Parse and validate spec YAML. Raises SpecLoadError listing every problem with its place."""
    node = compose_spec(text, file)
    try:
        data = _construct(node) if node is not None else None
    except yaml.YAMLError as e:
        raise SpecLoadError([_yaml_issue(e, file, text)]) from None
    positions = _Positions()
    if node is not None:
        positions.walk(node)
    if not isinstance(data, dict):
        raise SpecLoadError([SpecIssue(file=file, line=1, message="a spec must be a YAML mapping (key: value pairs)")])
    duplicates = [
        SpecIssue(file=file, line=mark[0], column=mark[1], path=".".join(map(str, loc)), message="key given twice; YAML would silently keep only the last")
        for loc, mark in positions.duplicates
    ]
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecLoadError(duplicates + _issues_from_validation(e, data, positions, file)) from None
    if duplicates:
        raise SpecLoadError(duplicates)
    return spec


def read_spec_text(path: str | Path) -> str:
    """A spec file's text, refused (with a sentence, never an exception name) when it is missing, a folder, too large
    or not UTF-8."""
    path = Path(path)
    file = str(path)

    def fail(message: str, line: int | None = None, column: int | None = None) -> SpecLoadError:
        return SpecLoadError([SpecIssue(file=file, line=line, column=column, message=message)])

    try:
        if path.is_dir():
            raise fail("is a folder, not a spec file")
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise fail(f"the file is {size / 1e6:.1f} MB; a spec may be at most {MAX_SPEC_BYTES // 1024} KiB")
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # a file that grows while read is still bounded
    except FileNotFoundError:
        raise fail("file not found") from None
    except PermissionError:
        raise fail("cannot read the file: permission denied") from None
    except OSError as e:
        raise fail(f"cannot read the file: {(e.strerror or str(e)).lower()}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise fail(f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB, the most a spec may be")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line = before.count(b"\n") + 1
        column = e.start - (before.rfind(b"\n") + 1) + 1
        raise fail(f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8", line, column) from None


def load_spec(path: str | Path) -> Spec:
    return parse_spec_text(read_spec_text(path), str(path))


def spec_hash(spec: Spec) -> str:
    """Identity of a spec's content (not its formatting): sha256 of canonical JSON."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
