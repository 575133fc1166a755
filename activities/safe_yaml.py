"""YAML from an untrusted repository, loaded so that no file can crash or stall the loader.

`load` is `yaml.safe_load` for the first documents of a text, with three guards: alias count,
nesting depth and expanded size (a billion-laughs file is refused before anything walks it).
Local tags such as `!vault` and `!unsafe` load as their plain value. Every failure is one of
two exceptions, each with a message fit to show: `YamlTooComplex` or `InvalidYaml`.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 1_000_000  # a 1 MiB file holds far fewer; billion laughs far more


class YamlTooComplex(Exception):
    """Aliases, nesting or expansion beyond any real playbook: refused before use."""


class InvalidYaml(Exception):
    """Not YAML at all; the message is the parser's first complaint, with its line."""


try:
    from yaml._yaml import CParser as _Parser  # libyaml's scanner: four times faster
except ImportError:  # pragma: no cover - the same events from the pure-Python parser

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]  # the same name as libyaml's parser
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _GuardedLoader(Composer, _Parser, SafeConstructor, Resolver):
    """A safe loader whose (Python) composer counts aliases and depth.

    safe_load shares aliased nodes, so a billion-laughs file loads in microseconds and explodes
    later in whatever walks or serialises the result; refusing at load time keeps it out.
    """

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise YamlTooComplex(f"more than {MAX_ALIASES} aliases")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise YamlTooComplex(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _tagged(loader: SafeConstructor, suffix: str, node: yaml.Node) -> Any:
    """`!vault`, `!unsafe` and other local tags: the plain value is enough to catalogue."""
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.MappingNode), "a YAML node is a scalar, a sequence or a mapping"
    return loader.construct_mapping(node)


_GuardedLoader.add_multi_constructor("!", _tagged)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Nodes the document would have with every alias copied out; cycles are refused too."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_EXPANDED_NODES:
                raise YamlTooComplex(f"expands to more than {MAX_EXPANDED_NODES} nodes")
        elif key in open_nodes:
            raise YamlTooComplex("recursive alias")
        elif key not in sizes:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node))


def load(text: str, max_docs: int = 2) -> list[Any]:
    """The first `max_docs` documents of `text` (two are enough to tell a playbook).

    Raises `YamlTooComplex` for a YAML bomb, `InvalidYaml` for anything the parser rejects.
    """
    loader = _GuardedLoader(text)
    try:
        docs: list[Any] = []
        while len(docs) < max_docs and loader.check_node():
            node = loader.get_node()
            if node is not None:
                _check_expansion(node)
            docs.append(loader.construct_document(node))
        return docs
    except RecursionError as err:
        raise YamlTooComplex("nested too deeply") from err
    except (yaml.YAMLError, ValueError, TypeError) as err:  # constructors raise the latter two
        if "maximum nesting depth" in str(err):
            # libyaml 0.2.6 (PyYAML 6.0.4's wheels) stops at its own depth limit, which its
            # scanner can reach on a long run of `[` before the composer above has counted 64.
            raise YamlTooComplex(f"nested deeper than {MAX_DEPTH} levels") from err
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InvalidYaml(where + (getattr(err, "problem", None) or str(err).split("\n")[0])) from err
    finally:
        loader.dispose()
