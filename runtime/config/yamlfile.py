"""YAML ecosystem files, read by PyYAML's C loader (`CSafeLoader`; `SafeLoader` without libyaml).

Two checks of our own on top of the safe loader: a key given twice in one mapping is an
error (PyYAML would keep the last one silently), and a document whose aliases expand to
more than `MAX_YAML_VALUES` values, or refer to themselves, is refused before anything is
built from it (an alias bomb would otherwise be copied out by `${VAR}` expansion).
Imported only for YAML files, like each format's parser.
"""

from __future__ import annotations

from typing import Any

import yaml

from runtime.errors import ConfigError

MAX_YAML_VALUES = 100_000  # values a YAML document may expand to, aliases counted each time


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]  # CSafeLoader has no stubs
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may repeat keys on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base constructor says so
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values `node` stands for once every alias is copied out (memoized)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in open_:
        raise ValueError("an alias refers to itself")
    open_.add(id(node))
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(item, sizes, open_) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded_size(key, sizes, open_) + _expanded_size(value, sizes, open_)
    open_.discard(id(node))
    sizes[id(node)] = min(total, MAX_YAML_VALUES + 1)
    return sizes[id(node)]


def parse_yaml(text: str, label: str) -> object:
    """One YAML document as data (see the module docstring for the two extra checks)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_YAML_VALUES:
            raise ConfigError(label, f"expected at most {MAX_YAML_VALUES} values, got more")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        line = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise ConfigError(label, f"{line}invalid YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError(label, f"invalid YAML: {exc}") from None
    except (AttributeError, KeyError, IndexError):  # PyYAML's own, on `!!timestamp x` and kin
        raise ConfigError(label, "invalid YAML: a value that does not fit its !! tag") from None
    finally:
        loader.dispose()
