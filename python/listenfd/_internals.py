"""What the per-server packages share to check a server's internals: the one
resolver of the names on each server's list, and one wording for a server
release listenfd cannot work with."""

from __future__ import annotations

import importlib
from collections.abc import Mapping


def _instance_attribute(cls: type, attr: str) -> bool:
    """`attr` is an instance attribute of `cls`: a method of the class (or
    of a base) sets or reads ``self.attr`` (the name is among its code's)."""
    for klass in cls.__mro__:
        for member in vars(klass).values():
            code = getattr(member, "__code__", None)
            if code is not None and attr in code.co_names:
                return True
    return False


def present(dotted: str, roots: Mapping[str, object]) -> bool:
    """Whether `dotted` resolves: its longest prefix that is a key of
    `roots` (a class, an instance, a module) or else an importable module,
    then each attribute in turn. On a class, an instance attribute its
    methods use counts."""
    parts = dotted.split(".")
    obj: object = None
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in roots:
            obj = roots[prefix]
            break
        try:
            obj = importlib.import_module(prefix)
        except ImportError:
            continue
        break
    else:
        return False
    *path, last = parts[cut:]
    for attr in path:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return hasattr(obj, last) or (isinstance(obj, type) and _instance_attribute(obj, last))


def missing(required: Mapping[str, str], roots: Mapping[str, object]) -> list[str]:
    """The names of `required` (name -> what it is used for) that do not
    resolve (`present`), each as "name (what it is used for)"."""
    return [f"{name} ({purpose})" for name, purpose in required.items() if not present(name, roots)]


def unsupported(server: str, version: str, supported: str, missing: list[str]) -> str:
    """The error for `server` `version` lacking the internals `missing`
    ("name (what it is used for)" each)."""
    return (
        f"listenfd's --systemd-socket does not support {server} {version} "
        f"(supported: {supported}): missing {'; '.join(missing)}. "
        f"Run without --systemd-socket, or install a supported {server}."
    )
