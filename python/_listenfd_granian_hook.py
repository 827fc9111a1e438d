"""Adds --systemd-socket to Granian's command line when `granian.cli` is imported.

`install()` puts a finder on sys.meta_path that waits for `granian.cli`. It is
called from the import line of `listenfd-granian.pth` (Python <= 3.14) or, by
PEP 829, from `listenfd-granian.start` (Python >= 3.15, which then skips the
.pth import line). The .pth line imports this module only in interpreters whose
command line names granian (`granian ...`, `python -m granian`, a `-c` that
imports it: `sys.orig_argv`), so every other Python start pays just for that
one line, which is written for a cheap compile (site compiles it on every
start, twice in a virtual environment): a `%` format, no calls before the
test.

Nothing is imported beyond what `site` already loaded (annotations are strings).
LISTENFD_NO_GRANIAN_HOOK=1 turns it off.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType


class _Loader:
    """Runs the real loader of granian.cli, then adds our options."""

    def __init__(self, inner: "Loader") -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def create_module(self, spec: "ModuleSpec") -> "ModuleType | None":
        return self._inner.create_module(spec)

    def exec_module(self, module: "ModuleType") -> None:
        self._inner.exec_module(module)
        try:
            from listenfd.granian import patch_cli

            patch_cli(module)
        except Exception as exc:  # never break granian itself
            import warnings

            warnings.warn(
                f"listenfd: could not add --systemd-socket to granian ({exc!r}); "
                "granian runs without it. Set LISTENFD_NO_GRANIAN_HOOK=1 to silence this.",
                RuntimeWarning,
                stacklevel=2,
            )


def find_spec(
    name: str, path: "Sequence[str] | None" = None, target: object = None
) -> "ModuleSpec | None":
    """The real loader of `granian.cli`, wrapped to patch it; one-shot."""
    if name != "granian.cli":
        return None
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "listenfd_granian", False)]
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec(name, path)
    if spec is not None and spec.loader is not None:
        spec.loader = _Loader(spec.loader)  # type: ignore[assignment]
    return spec


class _GranianCliFinder:
    listenfd_granian = True
    find_spec = staticmethod(find_spec)


def install() -> None:
    """The PEP 829 entry point (`listenfd-granian.start`)."""
    # Out of sys.modules once it has run (the finder keeps what it needs):
    # pytest marks every top-level module of a distribution with a pytest11
    # plugin (ours) for assertion rewriting, and warns about those already
    # imported -- an error under filterwarnings=error, in any test run whose
    # command line names granian.
    sys.modules.pop(__name__, None)
    if os.environ.get("LISTENFD_NO_GRANIAN_HOOK", "") not in ("", "0"):
        return
    if not any(getattr(f, "listenfd_granian", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _GranianCliFinder)
