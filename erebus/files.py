"""Reading the files a profile names, as a hostile profile cannot abuse it.

A profile can name any path: ``ca /dev/zero``, a FIFO nobody writes to, a 2 GB
file, a directory, ``/dev/stdin``.  :func:`read_limited` opens without blocking
(``O_NONBLOCK``: a FIFO opens at once instead of waiting for a writer), refuses
everything but a regular file, and reads at most ``limit + 1`` bytes, so neither
``erebus check`` nor ``erebus up`` can hang or run out of memory on one.

The limit: the stock OpenVPN 2.6 client reads key files and inline blocks into
buffers that may not exceed ``BUF_SIZE_MAX`` (1,000,000 bytes, buffer.h; a larger
one is a "fatal buffer size error"), while CA bundles and CRLs go to OpenSSL
whole.  :data:`MAX_FILE_SIZE` leaves room for a large CA bundle or CRL and still
bounds what a profile can make erebus hold.

The refusal is an :class:`OSError` whose ``strerror`` says why, so a caller that
already reports ``cannot read PATH: {exc.strerror}`` reports it unchanged.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["MAX_FILE_SIZE", "FileRefused", "read_limited", "opens"]

MAX_FILE_SIZE = 4 * 1024 * 1024      # profiles, includes, keys, certificates, CRLs, auth files

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class FileRefused(OSError):
    """A file erebus will not read: not a regular file, or larger than the limit."""


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def read_limited(path: str | os.PathLike[str], limit: int = MAX_FILE_SIZE, *,
                 private: bool = False) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises :class:`FileRefused` (an ``OSError``) for a directory, FIFO, device or
    socket, for a file larger than ``limit`` and, with ``private``, for a file that
    users other than its owner may read or write (a file of secrets: ``chmod 600``,
    as ssh asks of a private key); other ``OSError`` as ``open`` raises them.  The
    checks are made on the opened file, not on the name."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | \
        getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)),
                        "not a regular file")
            code = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL
            raise FileRefused(code, f"{kind}, not a regular file", os.fspath(path))
        if private and st.st_mode & 0o077:
            raise FileRefused(errno.EPERM, f"other users may access it (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 {os.fspath(path)}",
                              os.fspath(path))
        if st.st_size > limit:
            raise FileRefused(errno.EFBIG, f"{_size(st.st_size)}, more than the "
                              f"{_size(limit)} erebus reads from one file", os.fspath(path))
        chunks, total = [], 0
        while total <= limit:                 # the file may grow after fstat
            chunk = os.read(fd, min(1 << 16, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise FileRefused(errno.EFBIG, f"more than the {_size(limit)} erebus reads "
                              "from one file", os.fspath(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def opens(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` opens for reading (and is closed again at once): how 2.6's
    ``crl-verify DIR dir`` decides that a serial is revoked (ssl_verify.c
    ``verify_check_crl_dir``: ``platform_open(fn, O_RDONLY)``; any failure means "not
    revoked").  ``O_NONBLOCK``: a FIFO named by a serial cannot hang the handshake."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | \
        getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    os.close(fd)
    return True
