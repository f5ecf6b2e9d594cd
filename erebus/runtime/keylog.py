"""``--keylog FILE``: the secrets Wireshark's WireGuard dissector needs to decrypt a
capture, in the format of its ``wg.keylog_file`` preference (one ``TYPE = base64``
per line: LOCAL_STATIC_PRIVATE_KEY, REMOTE_STATIC_PUBLIC_KEY,
LOCAL_EPHEMERAL_PRIVATE_KEY, PRESHARED_KEY).  Wireshark needs the long-term private
key as well as each handshake's ephemeral one, so the file is as secret as the profile:
created 0600 like a capture (:func:`erebus.runtime.pcap.open_capture`: never through a
symlink, never another user's file), written only when asked for, each line at once
(Wireshark rereads a growing key log).
"""

from __future__ import annotations

import base64
import os

from .pcap import open_capture

__all__ = ["KeyLog"]

_HOLDS = "the key log holds the private key"


class KeyLog:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._fd: int | None = open_capture(path, option="--keylog", holds=_HOLDS)
        self._written: set[tuple[str, bytes]] = set()

    def write(self, entries) -> None:
        """``(TYPE, key bytes)`` pairs; one already written is not repeated."""
        if self._fd is None:
            return
        lines = []
        for kind, key in entries:
            if (kind, key) in self._written:
                continue
            self._written.add((kind, key))
            lines.append(f"{kind} = {base64.b64encode(key).decode()}\n")
        if lines:
            os.write(self._fd, "".join(lines).encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
