"""Adds --systemd-socket to the command lines of Granian, uvicorn and
hypercorn, when the module that defines each one is imported.

`install()` puts a finder on sys.meta_path that waits for `granian.cli`,
`uvicorn.main` or `hypercorn.__main__` and patches it once loaded. It is
called from the line of `listenfd-servers.pth`, which imports it only in
interpreters whose command line names one of the servers ("granian", or
"corn" for uvicorn and hypercorn, in `sys.orig_argv`: `uvicorn ...`,
`python -m hypercorn`, a `-c` that imports one), so every other Python
start pays just for that one line, which is written for a cheap compile
(site compiles it on every start, twice in a virtual environment): a `%`
format, one `replace` folding the names together, one test, no calls
before it.

Nothing is imported beyond what `site` already loaded (annotations are strings).

No PEP 829 `.start` file: CPython 3.15 and later run `.pth` import lines
until 3.18, and to resolve any `.start` entry point `site` imports pkgutil,
which adds ~7.3 ms to every interpreter start in the environment (CPython
3.15.2, `bench/startup_hook.py`: a `.start` file naming `os:getcwd` alone
+7.27 ms, this `.pth` line +0.24 ms). `tests/test_hook.py` fails on the
first Python that no longer runs the line.
LISTENFD_NO_HOOK=1 turns it off for every server.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

# The module that defines each server's command line -> (the listenfd
# module whose patch_cli() patches it, the server's name for messages). The
# module, not its package: `import listenfd.uvicorn` imports uvicorn, which
# imports uvicorn.main while that package is still half-initialized.
PATCHED = {
    "granian.cli": ("listenfd.granian._cli", "granian"),
    "uvicorn.main": ("listenfd.uvicorn._cli", "uvicorn"),
    "hypercorn.__main__": ("listenfd.hypercorn._cli", "hypercorn"),
}


# The CLI modules already patched (each once).
_seen: "set[str]" = set()


class _Loader:
    """Runs the real loader of a server's CLI module, then adds our options."""

    def __init__(self, inner: "Loader", name: str) -> None:
        self._inner = inner
        self._name = name

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def create_module(self, spec: "ModuleSpec") -> "ModuleType | None":
        return self._inner.create_module(spec)

    def exec_module(self, module: "ModuleType") -> None:
        self._inner.exec_module(module)
        package, server = PATCHED[self._name]
        try:
            __import__(package)
            sys.modules[package].patch_cli(module)
        except Exception as exc:  # never break the server itself
            import warnings

            warnings.warn(
                f"listenfd: could not add --systemd-socket to {server} ({exc!r}); "
                f"{server} runs without it. Set LISTENFD_NO_HOOK=1 to silence this.",
                RuntimeWarning,
                stacklevel=2,
            )


def find_spec(
    name: str, path: "Sequence[str] | None" = None, target: object = None
) -> "ModuleSpec | None":
    """The real loader of a server's CLI module, wrapped to patch it."""
    if name not in PATCHED or name in _seen:
        return None
    _seen.add(name)
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec(name, path)
    if spec is not None and spec.loader is not None:
        spec.loader = _Loader(spec.loader, name)  # type: ignore[assignment]
    return spec


class _ServerCliFinder:
    listenfd_hook = True
    find_spec = staticmethod(find_spec)


def runs_a_server(argv: "Sequence[str]") -> bool:
    """The .pth line's gate, for a direct call: the command line names
    granian, uvicorn or hypercorn."""
    return "granian" in str(argv).replace("corn", "granian")


def install() -> None:
    """Put the finder in place (once), in an interpreter whose command line
    names a server."""
    # Out of sys.modules once it has run (the finder keeps what it needs):
    # pytest marks every top-level module of a distribution with a pytest11
    # plugin (ours) for assertion rewriting, and warns about those already
    # imported -- an error under filterwarnings=error, in any test run whose
    # command line names a server.
    sys.modules.pop(__name__, None)
    if os.environ.get("LISTENFD_NO_HOOK", "") not in ("", "0"):
        return
    if not runs_a_server(getattr(sys, "orig_argv", sys.argv)):
        return
    if not any(getattr(f, "listenfd_hook", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _ServerCliFinder)
