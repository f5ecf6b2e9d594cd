"""A hostile profile names files erebus must not read: ``/dev/zero``, a FIFO nobody
writes to, a sparse 2 GB file, a directory, ``/dev/stdin``.  ``erebus check`` and
``erebus up`` refuse each at once with FILE:LINE: option: reason, never hang on it
and never read it into memory."""

from __future__ import annotations

import os
import resource
import signal
import textwrap
import time
from pathlib import Path

import pytest

from erebus.check import check
from erebus.errors import ConfigError
from erebus.files import MAX_FILE_SIZE, FileRefused, read_limited
from erebus.families import open_tunnel

PKI = Path(__file__).resolve().parents[1] / "profiles" / "pki"
TWO_GB = 2 * 1024 * 1024 * 1024


@pytest.fixture(autouse=True)
def no_hang():
    """A test that blocks on a FIFO fails after 10 s instead of hanging the suite."""
    def hung(signum, frame):
        raise AssertionError("blocked on a hostile file")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def hostile(kind: str, tmp_path: Path) -> tuple[str, str]:
    """(path, the reason erebus must give) for one kind of hostile file."""
    if kind == "fifo":
        path = tmp_path / "fifo.pem"
        os.mkfifo(path)
        return str(path), "a FIFO, not a regular file"
    if kind == "zero":
        return "/dev/zero", "a character device, not a regular file"
    if kind == "sparse":
        path = tmp_path / "big.pem"
        with open(path, "wb") as f:
            f.truncate(TWO_GB)
        return str(path), "2048.0 MiB, more than the 4.0 MiB erebus reads from one file"
    if kind == "dir":
        path = tmp_path / "folder.pem"
        path.mkdir()
        return str(path), "a directory, not a regular file"
    raise AssertionError(kind)


KINDS = ["fifo", "zero", "sparse", "dir"]


def ovpn(tmp_path: Path, **replace: str) -> Path:
    """A valid profile, with the files of some options replaced."""
    files = {"ca": PKI / "ca.crt", "cert": PKI / "client.crt", "key": PKI / "client.key",
             "crl-verify": PKI / "crl.pem", "tls-auth": PKI / "ta.key",
             "auth-user-pass": PKI / "user.txt"}
    files.update(replace)
    lines = ["client", "dev tun", "remote 198.18.0.1 1194", "remote-cert-tls server",
             "key-direction 1"]
    lines += [f"{name} {value}" for name, value in files.items()
              if name not in ("config", "askpass")]
    if "askpass" in replace:
        lines.append(f"askpass {replace['askpass']}")
    if "config" in replace:
        lines.append(f"config {replace['config']}")
    path = tmp_path / "hostile.ovpn"
    path.write_text("\n".join(lines) + "\n")
    return path


def line_of(path: Path, start: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1)
                if line.startswith(start))


def test_the_valid_profile_is_valid(tmp_path):
    code, report = check(str(ovpn(tmp_path)))
    assert code == 0, report["problems"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("option", ["ca", "cert", "key", "crl-verify", "tls-auth",
                                    "auth-user-pass", "config"])
def test_check_refuses_hostile_files_named_by_ovpn(tmp_path, kind, option):
    bad, reason = hostile(kind, tmp_path)
    profile = ovpn(tmp_path, **{option: bad})
    started = time.monotonic()
    code, report = check(str(profile))
    assert time.monotonic() - started < 2
    assert code == 1
    want = f"{profile}:{line_of(profile, option + ' ')}: {option}: cannot read {bad}: {reason}"
    assert want in [p["text"] for p in report["problems"]], report["problems"]


@pytest.mark.parametrize("kind", KINDS)
def test_askpass_file(tmp_path, kind):
    bad, reason = hostile(kind, tmp_path)
    profile = ovpn(tmp_path, key=str(PKI / "client-encrypted.key"), askpass=bad)
    code, report = check(str(profile))
    want = f"{profile}:{line_of(profile, 'askpass ')}: askpass: cannot read {bad}: {reason}"
    assert want in [p["text"] for p in report["problems"]], report["problems"]


def test_dev_stdin_is_refused(tmp_path):
    """Whatever stdin is under the test runner (a pipe, a terminal, /dev/null), never a
    regular file the test made: refused, not read."""
    if os.path.isfile("/dev/stdin"):
        pytest.skip("stdin is a regular file here")
    profile = ovpn(tmp_path, ca="/dev/stdin")
    code, report = check(str(profile))
    texts = [p["text"] for p in report["problems"]]
    assert any(t.startswith(f"{profile}:{line_of(profile, 'ca ')}: ca: cannot read "
                            "/dev/stdin: ") and "not a regular file" in t for t in texts), texts


@pytest.mark.parametrize("kind", KINDS)
def test_the_profile_itself(tmp_path, kind):
    bad, reason = hostile(kind, tmp_path)
    code, report = check(bad)
    assert code == 1
    assert [p["text"] for p in report["problems"]] == [
        f"{bad}: cannot read the profile: {reason}"]


@pytest.mark.parametrize("kind", ["fifo", "sparse"])
def test_up_refuses_before_connecting(tmp_path, kind):
    """``erebus up`` loads the profile the same way: a ConfigError, not a hang."""
    bad, reason = hostile(kind, tmp_path)
    profile = ovpn(tmp_path, ca=bad)
    with pytest.raises(ConfigError, match=f"ca: cannot read {bad}: {reason}"):
        open_tunnel(str(profile))


def test_memory_stays_small(tmp_path):
    """A 2 GB file (sparse) and /dev/zero are refused without reading them: RSS grows by
    far less than the limit."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for kind in ("sparse", "zero"):
        bad, _ = hostile(kind, tmp_path)
        check(str(ovpn(tmp_path, ca=bad)))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 16 * 1024


# -- the reader itself --------------------------------------------------------------------

def test_read_limited_reads_up_to_the_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    assert read_limited(path, limit=1000) == b"x" * 1000
    with pytest.raises(FileRefused, match="1000 bytes, more than the 999 bytes"):
        read_limited(path, limit=999)
    assert MAX_FILE_SIZE == 4 * 1024 * 1024


def test_read_limited_follows_a_symlink_to_a_regular_file_only(tmp_path):
    (tmp_path / "real").write_bytes(b"ok")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_limited(tmp_path / "link") == b"ok"
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link2").symlink_to(tmp_path / "fifo")
    with pytest.raises(FileRefused, match="a FIFO"):
        read_limited(tmp_path / "link2")


# -- ESP (TOML) and swanctl.conf ------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_toml_profile(tmp_path, kind):
    from erebus.ipsec.profile import load_esp_profile
    bad, reason = hostile(kind, tmp_path)
    link = tmp_path / "esp.toml"
    link.symlink_to(bad)
    with pytest.raises(ConfigError) as info:
        load_esp_profile(link)
    assert str(info.value) == f"{link}: cannot read the profile: {reason}"
    code, report = check(str(link))
    assert code == 1 and report["problems"][0]["text"] == str(info.value)


SWANCTL = """
    connections {
        home {
            remote_addrs = 198.18.0.1
            local {
                auth = psk
                id = client.test
            }
            remote {
                auth = psk
                id = vpn.test
            }
            children {
                home {
                    remote_ts = 198.19.0.0/24
                }
            }
        }
    }
    secrets {
        ike-home {
            secret = "test-only"
        }
    }
"""


SWANCTL_CERT = SWANCTL.replace("auth = psk\n                id = client.test",
                               "auth = pubkey\n                certs = client.crt", 1)


@pytest.mark.parametrize("kind", KINDS)
def test_swanctl_conf_and_its_includes(tmp_path, kind):
    from erebus.ipsec.swanctl import load_swanctl
    bad, reason = hostile(kind, tmp_path)
    d = tmp_path / "swan"
    d.mkdir()
    conf = d / "swanctl.conf"
    conf.symlink_to(bad)
    with pytest.raises(ConfigError) as info:
        load_swanctl(str(conf))
    assert str(info.value) == f"{conf}: cannot read: {reason}"
    conf.unlink()
    if kind == "dir":
        return                        # an included directory is skipped, as strongSwan does
    conf.write_text(textwrap.dedent(SWANCTL) + f"include {bad}\n")
    with pytest.raises(ConfigError) as info:
        load_swanctl(str(conf))
    line = len(conf.read_text().splitlines())
    assert str(info.value) == f"{conf}:{line}: include: cannot read {bad}: {reason}"


@pytest.mark.parametrize("kind", ["fifo", "sparse"])
def test_swanctl_certificate_files(tmp_path, kind):
    from erebus.ipsec.swanctl import load_swanctl
    bad, reason = hostile(kind, tmp_path)
    d = tmp_path / "swan"
    for sub in ("x509", "x509ca", "private"):
        (d / sub).mkdir(parents=True)
    (d / "x509" / "client.crt").symlink_to(bad)
    conf = d / "swanctl.conf"
    conf.write_text(textwrap.dedent(SWANCTL_CERT))
    assert "certs = client.crt" in conf.read_text()
    with pytest.raises(ConfigError, match=f"cannot read certificate {d / 'x509' / 'client.crt'}"
                       f": {reason}"):
        load_swanctl(str(conf))


def test_swanctl_private_key_too_large(tmp_path):
    """A 2 GB file among the private keys is refused by name, not read."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from erebus.ipsec.swanctl import load_swanctl
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    d = tmp_path / "swan"
    for sub in ("x509", "x509ca", "private"):
        (d / sub).mkdir(parents=True)
    (d / "x509" / "client.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    big = d / "private" / "a-big.key"
    with open(big, "wb") as f:
        f.truncate(TWO_GB)
    conf = d / "swanctl.conf"
    conf.write_text(textwrap.dedent(SWANCTL_CERT))
    with pytest.raises(ConfigError, match=f"cannot read {big}: 2048.0 MiB, more than"):
        load_swanctl(str(conf))


def test_config_included_again_and_again_is_bounded(tmp_path):
    """Each include is at most 4 MiB, and all of them together at most 16 MiB: a profile
    of many lines 'config big.conf' is refused before it has read gigabytes."""
    big = tmp_path / "big.conf"
    big.write_bytes(b"# " + b"x" * (3 * 1024 * 1024) + b"\n")
    profile = ovpn(tmp_path)
    profile.write_text(profile.read_text() + f"config {big}\n" * 1000)
    started = time.monotonic()
    code, report = check(str(profile))
    assert time.monotonic() - started < 20
    texts = [p["text"] for p in report["problems"]]
    assert any(t.startswith(f"{profile}:") and "config: the 'config' files of this profile "
               "add up to more than 16 MiB" in t for t in texts), texts
