"""YAML documents that remember where each value came from.

Catalog files and device dossiers are written by hand, so a mistake must be
reported as one line naming the file and the line of the offending value. PyYAML
keeps that position on its node tree (``start_mark``) but drops it when it builds
Python objects, so we compose the node tree once, build the data from the same
nodes, and keep the tree to look up the line of any path such as
``("firmware", 0, "signature")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from metercert import safeload
from metercert.errors import InputFileError

#: YAML tag marking a value ``metercert dossier init`` wrote as an example to be replaced.
PLACEHOLDER_TAG = "!placeholder"


@dataclass(frozen=True)
class YamlDocument:
    """Parsed YAML data plus the node tree used to locate values by path."""

    path: Path
    data: Any
    root: yaml.Node | None
    #: Dotted paths (``support_period``, ``firmware[0].image``) of values tagged
    #: :data:`PLACEHOLDER_TAG`; only filled when read with ``placeholders=True``.
    placeholders: tuple[str, ...] = ()

    def line_of(self, where: Sequence[str | int]) -> int:
        """1-based line of the value at ``where``, or of the deepest existing parent."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else 1
        for step in where:
            if isinstance(node, yaml.MappingNode):
                found = None
                for key_node, value_node in node.value:
                    if key_node.value == str(step):
                        found = (key_node, value_node)
                        break
                if found is None:
                    return line
                node = found[1]
                # a scalar on the key's line reads better than the line after it
                line = found[0].start_mark.line + 1 if not isinstance(
                    node, (yaml.MappingNode, yaml.SequenceNode)
                ) else node.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if step >= len(node.value):
                    return line
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def where(self, where: Sequence[str | int]) -> str:
        """``file:line`` of the value at ``where``, for messages and evidence."""
        return f"{self.path}:{self.line_of(where)}"

    def error(self, where: Sequence[str | int], message: str) -> InputFileError:
        """An :class:`InputFileError` pointing at the value at ``where``."""
        dotted = dotted_path(where)
        label = f" ({dotted})" if dotted else ""
        return InputFileError(f"{self.where(where)}: {message}{label}")


def dotted_path(where: Sequence[str | int]) -> str:
    """``firmware[0].signature`` style rendering of a path."""
    out = ""
    for step in where:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _untag_placeholders(loader: yaml.SafeLoader, node: yaml.Node, where: list[str | int],
                        found: list[str]) -> None:
    """Record the paths of ``!placeholder`` nodes and give each the tag YAML would have
    resolved without the mark, so the value still loads (and is type-checked) as written."""
    if node.tag == PLACEHOLDER_TAG:
        found.append(dotted_path(where))
        if isinstance(node, yaml.ScalarNode):
            node.tag = loader.resolve(yaml.ScalarNode, node.value, (node.style is None, False))
        elif isinstance(node, yaml.SequenceNode):
            node.tag = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
        else:
            node.tag = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _untag_placeholders(loader, value_node, [*where, str(key_node.value)], found)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _untag_placeholders(loader, item, [*where, index], found)


def read_yaml(path: Path, *, placeholders: bool = False) -> YamlDocument:
    """Read ``path`` as YAML with safe constructors, keeping node positions.

    ``placeholders``: accept values tagged ``!placeholder`` (a dossier template's examples)
    and list their paths on the result; elsewhere the tag is an error like any unknown tag.
    Raises :class:`InputFileError` naming file and line for unreadable files and
    syntax errors; never lets a PyYAML exception or traceback escape.
    """
    try:
        text = safeload.read_text(path, what="dossier file", max_bytes=safeload.MAX_DOCUMENT_BYTES)
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    try:
        loader = safeload.SafeLoader(text)  # no aliases, anchors or duplicate keys
        try:
            root = loader.get_single_node()
            found: list[str] = []
            if placeholders and root is not None:
                _untag_placeholders(loader, root, [], found)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputFileError(f"{path}:{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise InputFileError(f"{path}: invalid YAML: {exc.__class__.__name__}") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # a value YAML cannot build (2024-13-01), or nesting too deep
        raise InputFileError(f"{path}: invalid YAML value: {exc.__class__.__name__}") from None
    return YamlDocument(path=path, data=data, root=root, placeholders=tuple(found))


def validate(doc: YamlDocument, schema: dict[str, Any]) -> None:
    """Raise one :class:`InputFileError` (file:line) for the first schema violation."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc.data), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return
    err = jsonschema.exceptions.best_match(errors) or errors[0]
    where: list[str | int] = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})), key=str)
        if extra:
            where.append(extra[0])  # point at the unknown key itself
    raise doc.error(where, _describe(err))


def _describe(err: jsonschema.ValidationError) -> str:
    """A short schema message without echoing whole sub-documents."""
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in (err.instance or {})]
        return f"missing field {missing[0]!r}" if missing else "missing field"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})), key=str)
        return f"unknown field {extra[0]!r}" if extra else "unknown field"
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
    if err.validator == "type":
        return f"expected {err.validator_value}, found {type(err.instance).__name__}"
    message = err.message
    return message if len(message) <= 160 else message[:157] + "..."
