"""Runs at interpreter start (from listenfd-granian.pth) and does almost nothing:
it puts a finder on sys.meta_path that waits for `granian.cli` to be imported,
then adds --systemd-socket to Granian's command line. Nothing is imported here
beyond what `site` already loaded.

LISTENFD_NO_GRANIAN_HOOK=1 turns it off.
"""

import os
import sys


class _Loader:
    """Runs the real loader of granian.cli, then adds our options."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self._inner = inner

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self._inner.create_module(spec)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
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
    def find_spec(cls, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name != "granian.cli":
            return None
        try:
            sys.meta_path.remove(cls)
        except ValueError:
            pass
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install():  # type: ignore[no-untyped-def]
    if os.environ.get("LISTENFD_NO_GRANIAN_HOOK", "") not in ("", "0"):
        return
    if _GranianCliFinder not in sys.meta_path:
        sys.meta_path.insert(0, _GranianCliFinder)
