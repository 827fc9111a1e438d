"""What the per-server packages share to check a server's internals: the one
resolver of the names on each server's list, and one wording for a server
release listenfd cannot work with."""

from __future__ import annotations

import dis
import importlib
from collections.abc import Mapping


def _instance_attribute(cls: type, attr: str) -> bool:
    """`attr` is an instance attribute of `cls`: a method of the class (or
    of a base) assigns ``self.attr``."""
    for klass in cls.__mro__:
        for member in vars(klass).values():
            code = getattr(member, "__code__", None)
            if code is None or attr not in code.co_names:
                continue
            for instruction in dis.get_instructions(code):
                if instruction.opname == "STORE_ATTR" and instruction.argval == attr:
                    return True
    return False


def present(dotted: str, roots: Mapping[str, object]) -> bool:
    """Whether `dotted` resolves: its longest prefix that is a key of
    `roots` (a class, an instance, a module) or else an importable module,
    then each attribute in turn. The last may be an instance attribute
    that the class's methods use (set later than ``__init__``, or on
    instances yet to be made)."""
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
    cls = obj if isinstance(obj, type) else type(obj)
    return hasattr(obj, last) or _instance_attribute(cls, last)


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
