"""``--pcap FILE`` holds the decrypted traffic: the file is created 0600, and a name
another local user prepared (a symlink, a FIFO, a file of theirs, a hard link) is
refused with one clear line instead of being written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from erebus.errors import ConfigError
from erebus.runtime.pcap import PcapWriter
from tests.ci import require

SHB = b"\x0a\x0d\x0d\x0a"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_capture_is_private_whatever_the_umask(tmp_path):
    path = tmp_path / "cap.pcapng"
    old = os.umask(0)
    try:
        PcapWriter(path).close()
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and path.read_bytes()[:4] == SHB


def test_our_own_file_is_truncated_and_made_private(tmp_path):
    path = tmp_path / "cap.pcapng"
    path.write_bytes(b"old capture " * 1000)
    os.chmod(path, 0o644)
    PcapWriter(path).close()
    assert mode(path) == 0o600
    data = path.read_bytes()
    assert data[:4] == SHB and b"old capture" not in data


def test_symlink_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious\n")
    link = tmp_path / "cap.pcapng"
    link.symlink_to(target)
    with pytest.raises(ConfigError) as info:
        PcapWriter(link)
    assert str(info.value).startswith(f"--pcap: {link}: is a symbolic link; the capture "
                                      "holds the decrypted traffic")
    assert target.read_text() == "precious\n"


def test_dangling_symlink_refused_and_nothing_created(tmp_path):
    link = tmp_path / "cap.pcapng"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        PcapWriter(link)
    assert not (tmp_path / "would-be-created").exists()


def test_fifo_refused_at_once(tmp_path):
    fifo = tmp_path / "cap.pcapng"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=f"--pcap: {fifo}: is a FIFO"):
        PcapWriter(fifo)


def test_hard_link_refused(tmp_path):
    own = tmp_path / "mine"
    own.write_text("mine\n")
    os.link(own, tmp_path / "cap.pcapng")
    with pytest.raises(ConfigError, match="exists with 2 hard links"):
        PcapWriter(tmp_path / "cap.pcapng")
    assert own.read_text() == "mine\n"


def test_directory_refused(tmp_path):
    with pytest.raises(ConfigError, match=f"--pcap: cannot open {tmp_path}"):
        PcapWriter(tmp_path)


def test_file_another_user_made_first_is_refused(tmp_path):
    """The /tmp attack: another user creates the name, world-writable, and waits to read
    what erebus writes.  (Needs root to make a file of another user.)"""
    require([] if os.geteuid() == 0 else ["needs root to chown a file"], "chown")
    path = tmp_path / "cap.pcapng"
    path.write_bytes(b"")
    os.chmod(path, 0o666)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match=r"exists and belongs to another user \(uid 65534\)"):
        PcapWriter(path)
    assert path.read_bytes() == b"" and mode(path) == 0o666


def test_up_and_probe_refuse_before_connecting(tmp_path, capsys):
    """``erebus up/probe --pcap LINK``: one line, exit 2, nothing written through the link."""
    import sys
    from unittest import mock

    from erebus import cli
    target = tmp_path / "victim"
    target.write_text("precious\n")
    link = tmp_path / "cap.pcapng"
    link.symlink_to(target)
    profile = Path(__file__).resolve().parents[1] / "profiles" / "pfsense-export.ovpn"
    for command in ("up", "probe"):
        with mock.patch.object(sys, "argv", ["erebus", command, str(profile), "--pcap",
                                             str(link)]), pytest.raises(SystemExit) as exit_:
            cli.run()
        err = capsys.readouterr()
        lines = (err.err + err.out).strip().splitlines()
        assert exit_.value.code == 2, lines
        assert any(f"--pcap: {link}: is a symbolic link" in line for line in lines), lines
    assert target.read_text() == "precious\n"
