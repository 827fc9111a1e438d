"""Runs at interpreter start (from listenfd-granian.pth) and does almost nothing:
it puts a finder on sys.meta_path that waits for `granian.cli` to be imported,
then adds --systemd-socket to Granian's command line. Nothing is imported here
beyond what `site` already loaded (not even typing: annotations are strings).

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


class _GranianCliFinder:
    """One-shot: steps aside at its first match."""

    @classmethod
    def find_spec(
        cls, name: str, path: "Sequence[str] | None" = None, target: object = None
    ) -> "ModuleSpec | None":
        if name != "granian.cli":
            return None
        if cls in sys.meta_path:
            sys.meta_path.remove(cls)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)  # type: ignore[assignment]
        return spec


def install() -> None:
    if os.environ.get("LISTENFD_NO_GRANIAN_HOOK", "") not in ("", "0"):
        return
    if _GranianCliFinder not in sys.meta_path:
        sys.meta_path.insert(0, _GranianCliFinder)
