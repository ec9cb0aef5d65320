"""Config as commented YAML: each dataclass field's trailing `# comment` in the source becomes the
comment of its YAML key (how configs/default.yaml and `webseg config` explain every key).

    field_comments(CRFConfig)      -> {"iterations": "mean-field steps", ...}
    commented_yaml(WebSegConfig()) -> "pseudo_label:\\n  decode:\\n    frame_stride: 1  # ...\\n"
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import math
import textwrap
import tokenize
from typing import Any

import yaml

INDENT = "  "
PRAGMAS = ("fmt:", "noqa", "type:", "pragma:", "pylint:")


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """{field name: comment} from the class source: the comment on the field's logical line
    (trailing, or inside its parentheses), else the comment lines just above the field."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (built in a REPL, frozen app): no comments
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    return _comments_by_field(source, names)


@dataclasses.dataclass
class _FieldLine:
    name: str | None  # None: a logical line of the class body that is not a field
    trailing: str = ""  # the comment on the field's own logical line
    above: list[str] = dataclasses.field(default_factory=list)  # comment-only lines before it
    blank_before_above: bool = False  # a blank line separates `above` from the line before


def _class_body_lines(source: str, names: set[str]) -> list[_FieldLine]:
    """The logical lines of the class body (depth 1) with their comments, in order."""
    lines: list[_FieldLine] = []
    depth, line, above, blank = 0, None, [], False
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        kind, text = token.type, token.string
        if kind in (tokenize.INDENT, tokenize.DEDENT):
            depth += 1 if kind == tokenize.INDENT else -1
        elif kind == tokenize.COMMENT and _is_pragma(text):
            continue
        elif kind == tokenize.COMMENT and line is not None:
            line.trailing = line.trailing or _comment_text(text)
        elif kind == tokenize.COMMENT:
            above.append(_comment_text(text))
        elif kind == tokenize.NL and line is None and not token.line.strip():
            blank = blank or not above
        elif kind not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER) and line is None:
            name = text if depth == 1 and kind == tokenize.NAME and text in names else None
            line, above, blank = _FieldLine(name, "", above, blank), [], False
        elif kind == tokenize.NEWLINE and line is not None:
            lines.append(line)
            line = None
    lines.append(_FieldLine(None, "", above, blank))  # comments after the last line
    return lines


def _comments_by_field(source: str, names: set[str]) -> dict[str, str]:
    """A field's comment is its trailing comment, continued by comment-only lines right under it
    when the next line has a trailing comment of its own; a field without a trailing comment takes
    the comment lines just above it."""
    lines = _class_body_lines(source, names)
    comments: dict[str, str] = {}
    for previous, line in zip([None, *lines], lines, strict=False):
        if line.name and not line.trailing and line.above:
            comments.setdefault(line.name, " ".join(line.above))
            continue
        if line.name and line.trailing:
            comments.setdefault(line.name, line.trailing)
        continues = previous and previous.name and previous.trailing and not line.blank_before_above
        if continues and line.above and previous.name in comments:
            comments[previous.name] += " " + " ".join(line.above)
    return comments


def _is_pragma(token_text: str) -> bool:
    """Tool directives (`# fmt: off`, `# noqa: E501`, `# type: ignore`) are not documentation."""
    return _comment_text(token_text).startswith(PRAGMAS)


def _comment_text(token_text: str) -> str:
    return token_text.lstrip("#").strip()


def _plain(value: Any) -> Any:
    """Tuples as lists and nested dataclasses as dicts: what yaml.safe_dump accepts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _key_lines(key: str, value: Any, comment: str | None, indent: str) -> list[str]:
    """One key of a mapping as YAML lines (flow style for lists), the comment on its first line."""
    value = _plain(value)
    if isinstance(value, list):
        flow = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
        text = yaml.safe_dump({key: None}, sort_keys=False).replace("null", flow, 1)
    else:
        text = yaml.safe_dump(
            {key: value}, default_flow_style=False, sort_keys=False, width=math.inf
        )
    lines = [indent + line for line in text.rstrip("\n").split("\n")]
    if comment:
        lines[0] += f"  # {comment}"
    return lines


def commented_yaml_lines(config: Any, indent: str = "") -> list[str]:
    """A dataclass instance as YAML lines, every field that has a source comment commented."""
    comments = field_comments(type(config))
    lines: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        comment = comments.get(f.name)
        if dataclasses.is_dataclass(value) and dataclasses.fields(value):
            lines.append(f"{indent}{f.name}:" + (f"  # {comment}" if comment else ""))
            lines.extend(commented_yaml_lines(value, indent + INDENT))
        else:
            lines.extend(_key_lines(f.name, value, comment, indent))
    return lines


def commented_yaml(config: Any) -> str:
    return "\n".join(commented_yaml_lines(config)) + "\n"
