"""YAML for specs, guarded against hostile input before any of it is built into Python objects.

A spec is small: a few hundred nodes, a few kilobytes of text. Everything far beyond that is refused with a located
error, in time linear in the file, before PyYAML's composer (recursive: deep nesting overflows the stack) or pydantic
(which walks alias expansions: a "billion laughs" file explodes) sees it:

- the file size and each scalar's length;
- nesting depth;
- the node count *after* alias expansion (computed from the event stream: an alias counts as the whole subtree it
  names), and recursive aliases;
- explicit tags other than the plain YAML types (`!!python/object` and friends are refused, not merely not run).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

MAX_SPEC_BYTES = 1 << 20  # 1 MiB: the largest real spec is a few KB
MAX_SCALAR_CHARS = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 20_000  # after alias expansion

_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present (about 20x faster)


class YamlLimitError(ValueError):
    """A spec text refused before it was built; line and column are 1-based (None when not known)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


@dataclass
class _Open:
    anchor: str | None
    size: int = 1


def _at(mark: yaml.Mark | None) -> tuple[int | None, int | None]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def check_yaml_limits(text: str) -> None:
    """Raise YamlLimitError when `text` is larger, deeper or expands further than any spec needs, or uses a tag that
    builds something other than plain data. One pass over the parser's events; nothing is composed."""
    if len(text) > MAX_SPEC_BYTES:
        raise YamlLimitError(f"the text is {len(text) / 1e6:.1f} MB; a spec may be at most {MAX_SPEC_BYTES // 1024} KiB")
    stack: list[_Open] = []
    sizes: dict[str, int] = {}  # anchor -> expanded node count of what it names
    total = 0
    any_alias = False
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            line, column = _at(getattr(event, "start_mark", None))
            tag = getattr(event, "tag", None)
            if tag is not None and tag not in _PLAIN_TAGS:
                shown = tag.replace("tag:yaml.org,2002:", "!!")
                raise YamlLimitError(
                    f"the YAML tag `{shown}` is not allowed: a spec holds plain values (text, numbers, true/false, lists, "
                    "mappings)",
                    line, column,
                )
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    if any(o.anchor == event.anchor for o in stack):
                        raise YamlLimitError(f"the alias *{event.anchor} refers to a block that contains it (recursive YAML)", line, column)
                    raise YamlLimitError(f"the alias *{event.anchor} names no anchor defined before it", line, column)
                added = sizes[event.anchor]
                any_alias = True
            elif isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_SCALAR_CHARS:
                    raise YamlLimitError(
                        f"a value of {len(event.value):,} characters; a spec value may be at most {MAX_SCALAR_CHARS:,}", line, column
                    )
                added = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                stack.append(_Open(event.anchor))
                if len(stack) > MAX_DEPTH:
                    raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep; a spec needs a handful", line, column)
                continue
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                closed = stack.pop()
                if closed.anchor is not None:
                    sizes[closed.anchor] = closed.size
                added = closed.size
            else:
                continue
            if stack:
                stack[-1].size += added
            else:
                total += added
            if total + sum(o.size for o in stack) > MAX_NODES:
                why = (
                    f"more than {MAX_NODES:,} values once aliases are expanded; a spec needs a few hundred (an alias/anchor "
                    "expansion like this one is refused, not built)"
                    if any_alias
                    else f"more than {MAX_NODES:,} values; a spec needs a few hundred"
                )
                raise YamlLimitError(why, line, column)
    except yaml.YAMLError:
        return  # malformed YAML: the loader reports it with its own place and words
