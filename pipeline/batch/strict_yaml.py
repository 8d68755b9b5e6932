"""YAML as manifests and presets are read: safe loading, with limits a hostile file cannot get past.

Each limit is refused with one line naming the file and where in it: a file over MAX_BYTES (before
parsing), nesting deeper than MAX_DEPTH (while composing, before Python's recursion limit), an
integer longer than MAX_INT_CHARS (before converting it: Python refuses long ones, and `1:2:3...`
sexagesimal ones cost quadratic time), any value or key longer than MAX_SCALAR_CHARS, a key given
twice in one mapping (the second would silently win), and keys that are not strings (no manifest or
preset key is a number or a boolean).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ..errors import InputError

MAX_BYTES = 1024 * 1024  # the largest real manifest is a few KB: one job is a few lines
MAX_DEPTH = 32  # levels, values included; a manifest needs 7 (the file, jobs, a job, styles, a set, a style, its path)
MAX_INT_CHARS = 100  # the largest integer any setting takes (seed) has 20 digits; 10**30 is refused by its setting
MAX_SCALAR_CHARS = 4096  # the longest path Linux takes; every value and key is shorter
STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """A limit this file broke: the message names where, without the file."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting past MAX_DEPTH, duplicate keys and keys that are not strings.
    Merge keys (`<<: *base`) work as in SafeLoader; the keys they bring in may be overridden."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._checked: set[int] = set()

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep at line {line}: a manifest needs 7")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def flatten_mapping(self, node):
        # construct_mapping starts here, and merging flattens the merged mappings through here too, so
        # this sees every mapping's own keys before a merge mixes others in (which may repeat them).
        if id(node) not in self._checked:
            self._checked.add(id(node))
            _check_keys(node)
        super().flatten_mapping(node)


KEY_KINDS = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "null", "timestamp": "a date",
             "seq": "a list", "map": "a mapping"}


def _check_keys(node: MappingNode) -> None:
    first: dict[str, tuple[int, int]] = {}
    for key_node, _ in node.value:
        at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        if key_node.tag == MERGE_TAG:
            key = "<<"
        elif isinstance(key_node, ScalarNode) and key_node.tag == STR_TAG:
            key = key_node.value
        else:
            shown = f"{_short(key_node.value, quote=False)} " if isinstance(key_node, ScalarNode) else ""
            kind = KEY_KINDS.get(key_node.tag.rpartition(":")[2], f"tagged {key_node.tag}")
            raise _Refused(f"key {shown}at line {at[0]} is {kind}, not a name such as output_dir or size (quote it if it is one)")
        if key in first:
            before = first[key]
            where, earlier = (f"line {at[0]}", f"line {before[0]}") if before[0] != at[0] else (
                f"line {at[0]} column {at[1]}", f"column {before[1]}")
            raise _Refused(f"duplicate key {_short(key)} at {where} (first at {earlier})")
        first[key] = at


def _too_long(root) -> str | None:
    """Where the first value too long is (an integer too long to convert, or any value or key longer
    than a path can be), as `jobs[0].seed: ...`; None when there is none.
    Walks the composed nodes once each (an alias repeats a node, not the work)."""
    seen: set[int] = set()
    stack = [(root, "")]
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            line, length = node.start_mark.line + 1, len(node.value)
            if node.tag == INT_TAG and length > MAX_INT_CHARS:
                return (f"{where or 'value'}: an integer {length:,} characters long at line {line} is out of range "
                        f"(no setting takes one over {MAX_INT_CHARS})")
            if length > MAX_SCALAR_CHARS:
                return f"{where or 'value'}: a value {length:,} characters long at line {line} is too long (at most {MAX_SCALAR_CHARS:,})"
        elif isinstance(node, SequenceNode):
            stack += [(child, f"{where}[{i}]") for i, child in reversed(list(enumerate(node.value)))]
        elif isinstance(node, MappingNode):
            pairs = []
            for key_node, value_node in node.value:
                label = _short(key_node.value, quote=False) if isinstance(key_node, ScalarNode) else "?"
                pairs += [(value_node, f"{where}.{label}" if where else label), (key_node, where or "key")]
            stack += reversed(pairs)
    return None


def _short(text: str, quote: bool = True, most: int = 40) -> str:
    text = text if len(text) <= most else text[:most] + "..."
    return repr(text) if quote else text


def read_yaml(source: Path, what: str = "manifest"):
    """The YAML document in `source`, safely loaded within the limits above; InputError naming
    `source` (and where in it) for anything else: missing, too large, not UTF-8, not valid YAML."""
    try:
        if not source.is_file():
            raise InputError(f"{what} not found", source)
        size = source.stat().st_size
        with source.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # no more, whatever the size said: the file may be growing
    except OSError as error:
        raise InputError(f"cannot read the {what}: {error.strerror}", source) from None
    if max(size, len(data)) > MAX_BYTES:
        raise InputError(f"is {max(size, len(data)):,} bytes; a {what} may be at most {MAX_BYTES // 1024 // 1024} MiB "
                         f"({MAX_BYTES:,} bytes): split it into several", source)
    try:
        loader = StrictLoader(data.decode("utf-8"))
        try:
            node = loader.get_single_node()
            problem = _too_long(node) if node is not None else None
            if problem:
                raise _Refused(problem)
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except _Refused as refused:
        raise InputError(str(refused), source) from None
    except RecursionError:  # not expected past MAX_DEPTH; kept so that no YAML can end in a traceback
        raise InputError("nested too deeply (a manifest needs 7 levels)", source) from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"not valid YAML{where}: {getattr(error, 'problem', error)}", source) from None
