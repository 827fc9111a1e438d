"""What the per-server packages share to check a server's internals: one
wording for a server release listenfd cannot work with."""

from __future__ import annotations


def unsupported(server: str, version: str, supported: str, missing: list[str]) -> str:
    """The error for `server` `version` lacking the internals `missing`
    ("name (what it is used for)" each)."""
    return (
        f"listenfd's --systemd-socket does not support {server} {version} "
        f"(supported: {supported}): missing {'; '.join(missing)}. "
        f"Run without --systemd-socket, or install a supported {server}."
    )
