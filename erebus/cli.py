"""Command line: argument parsing and logging setup; the work is done elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from . import __version__
from .errors import ConfigError, ErebusError, SessionError


def _setup_logging(verbosity: int, quiet_default: bool) -> None:
    if verbosity >= 2:
        level = logging.DEBUG
    elif verbosity == 1 or not quiet_default:
        level = logging.INFO
    else:
        level = logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


PROFILE_HELP = ("a profile: OpenVPN (.ovpn), ESP with manual SAs (.toml) or strongSwan "
                "(swanctl.conf)")
CONN_HELP = "with a swanctl.conf holding several connections: which one"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="erebus", description="A user-space VPN client: no root, no TUN, no routing "
        "changes.")
    parser.add_argument("--version", action="version", version=f"erebus {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, dest="verbose_top",
                        help="more log output (-v: info, -vv: debug)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v: info, -vv: debug)")
    common.add_argument("--pcap", metavar="FILE",
                        help="write the outer datagrams and the inner IPv4 packets to a "
                        "pcapng file (Wireshark, tshark)")
    common.add_argument("--keylog", metavar="FILE",
                        help="WireGuard: write the keys Wireshark needs to decrypt a capture "
                        "of the tunnel (its wg.keylog_file format). FILE holds the private "
                        "key: created 0600, never through a symlink")
    # the local-access options of up and run: erebus' own stack serves them
    access = argparse.ArgumentParser(add_help=False)
    access.add_argument("-L", dest="local_forwards", action="append", default=[],
                        metavar="[BIND:]PORT:HOST:HOSTPORT",
                        help="forward a local TCP port through the VPN to HOST:HOSTPORT "
                        "(repeatable; BIND defaults to 127.0.0.1; IPv6 addresses in brackets, "
                        "as ssh: -L [::1]:8080:[2001:2:0:2::2]:80; a name with A and AAAA "
                        "records is connected to by Happy Eyeballs)")
    access.add_argument("-R", dest="remote_forwards", action="append", default=[],
                        metavar="[BIND:]VPORT:LHOST:LPORT",
                        help="expose the local LHOST:LPORT on port VPORT of the virtual IP "
                        "(repeatable; every other port of the virtual IP answers RST; BIND: "
                        "both virtual IPs by default, 0.0.0.0 or [::] for one family's; an "
                        "IPv6 LHOST in brackets: 8080:[::1]:3000)")
    access.add_argument("--http-proxy", metavar="[HOST:]PORT",
                        help="serve an HTTP proxy (absolute URIs and CONNECT) into the VPN "
                        "(HOST defaults to 127.0.0.1; [::1]:3128 for IPv6)")
    access.add_argument("--socks", metavar="[HOST:]PORT",
                        help="serve a SOCKS5 proxy into the VPN: CONNECT and UDP ASSOCIATE, "
                        "to IPv4 and IPv6 addresses and names (HOST defaults to 127.0.0.1; "
                        "[::1]:1080 for IPv6)")
    access.add_argument("--proxy-auth-file", metavar="FILE",
                        help="require the username (first line of FILE) and password (second "
                        "line) from the clients of --http-proxy (Proxy-Authorization: Basic) "
                        "and --socks (RFC 1929); FILE must be private to its owner (chmod 600). "
                        "Or set EREBUS_PROXY_AUTH=user:password")
    access.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="give up connecting after S seconds (default: the profile's "
                        "connect-timeout, 120)")
    sub = parser.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("probe", parents=[common],
                           help="connect, report what the server gave us, disconnect")
    probe.add_argument("profile", help=PROFILE_HELP)
    probe.add_argument("--conn", metavar="NAME", help=CONN_HELP)
    probe.add_argument("--ping", metavar="ADDR",
                       help="ping this IPv4 or IPv6 address through the tunnel (ICMPv6 from the "
                       "tunnel's IPv6 address)")
    probe.add_argument("--json", action="store_true", help="print the report as JSON")
    probe.add_argument("--timeout", type=float, default=30.0, metavar="S",
                       help="give up after S seconds (default 30)")
    up = sub.add_parser("up", parents=[common, access],
                        help="bring the tunnel up and serve local access until SIGINT/SIGTERM")
    up.add_argument("profile", help=PROFILE_HELP)
    up.add_argument("--conn", metavar="NAME", help=CONN_HELP)
    up.add_argument("--socks-auth", metavar="USER:PASSWORD",
                    help="deprecated: like --proxy-auth-file for --socks only, but every "
                    "local user can read the password in ps")
    run = sub.add_parser("run", parents=[common, access],
                         help="run a command whose only network is the VPN (an unprivileged user and network namespace: any "
                         "program, TCP, UDP and ping, no proxy settings needed)",
                         description="Run COMMAND in a new user, network, mount and PID "
                         "namespace whose only interface is a TUN device erebus connects "
                         "to the tunnel: the pushed routes (every destination with --all "
                         "or a pushed redirect-gateway), the VPN's DNS servers in its "
                         "/etc/resolv.conf. No root; the host's interfaces, routes and "
                         "resolver are not touched. The exit status is COMMAND's.",
                         usage="erebus run PROFILE [options] -- COMMAND [ARGS...]")
    run.add_argument("profile", help=PROFILE_HELP)
    run.add_argument("--conn", metavar="NAME", help=CONN_HELP)
    run.add_argument("--all", action="store_true", dest="everything",
                     help="route every destination through the tunnel, not only the "
                     "pushed routes")
    run.add_argument("--shell", action="store_true",
                     help="run $SHELL (or /bin/sh) instead of a command")
    run.add_argument("command_argv", nargs="*", metavar="COMMAND",
                     help="the command and its arguments, after -- (everything after "
                     "-- is the command's)")
    up.add_argument("--control", metavar="PATH",
                    help="serve a control socket at PATH (mode 0600, only your uid and "
                    "root): for 'erebus status PATH' and 'erebus nc --via PATH'")
    up.add_argument("--print-env", action="store_true",
                    help="once ready, print to stdout the shell lines that point programs "
                    "at --http-proxy/--socks (http_proxy, https_proxy, ALL_PROXY, "
                    "NO_PROXY ...), then '# erebus: ready'; never any credentials: with "
                    "--proxy-auth-file, clients must give them their own way")
    up.add_argument("--pac", metavar="[HOST:]PORT",
                    help="serve a PAC file (GET /proxy.pac or /): the VPN's routes, "
                    "subnet and DNS domain through --http-proxy (or --socks), the rest "
                    "DIRECT")
    up.add_argument("--metrics", metavar="[HOST:]PORT",
                    help="serve Prometheus metrics on GET /metrics (docs/control.md)")
    nc = sub.add_parser("nc", help="splice stdin/stdout to one TCP connection through the "
                        "VPN (ssh -o ProxyCommand='erebus nc PROFILE %%h %%p')")
    nc.add_argument("profile", nargs="?", help=PROFILE_HELP + " (not with --via)")
    nc.add_argument("host", help="a name (resolved by the VPN's DNS) or an IP address")
    nc.add_argument("port", type=int)
    nc.add_argument("--via", metavar="SOCKET",
                    help="use the running 'erebus up --control SOCKET' instead of a tunnel "
                    "of its own")
    nc.add_argument("--conn", metavar="NAME", help=CONN_HELP)
    nc.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="give up connecting after S seconds (default 30)")
    nc.add_argument("-v", "--verbose", action="count", default=0,
                    help="log to stderr (-v: info, -vv: debug); quiet by default")
    status = sub.add_parser("status", help="ask a running 'erebus up --control PATH' how "
                            "its tunnel is")
    status.add_argument("socket", metavar="PATH", help="the --control socket")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--watch", action="store_true",
                        help="a live view, refreshed every second (Ctrl-C leaves)")
    status.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v: info, -vv: debug)")
    check = sub.add_parser("check", help="validate a profile offline (no name resolved, no "
                           "packet sent) and print what erebus would do with it")
    check.add_argument("profile", help=PROFILE_HELP)
    check.add_argument("--conn", metavar="NAME", help=CONN_HELP)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("-v", "--verbose", action="count", default=0,
                       help="more log output (-v: info, -vv: debug)")
    return parser


def _raise_fd_limit() -> None:
    """Every proxied connection holds a local socket: allow as many as the hard limit."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def _run(coro):
    """asyncio.run, on uvloop when it is installed (``pip install erebus[fast]``) and
    EREBUS_NO_UVLOOP is not set."""
    if not os.environ.get("EREBUS_NO_UVLOOP"):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


def _split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``erebus [...] run [...] -- COMMAND ...``: erebus' own arguments, and the command
    (None without a ``--`` after ``run``)."""
    if "run" in argv and "--" in argv and argv.index("run") < argv.index("--"):
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, None


def main(argv: list[str] | None = None) -> int:
    argv, command = _split_command(sys.argv[1:] if argv is None else list(argv))
    args = _parser().parse_args(argv)
    if command is not None and args.command == "run":
        args.command_argv = [*args.command_argv, *command]
    _raise_fd_limit()
    _setup_logging(args.verbose + args.verbose_top,
                   quiet_default=args.command in ("probe", "check", "run", "nc", "status"))
    if args.command == "probe":
        from .probe import probe, render
        try:
            report = _run(probe(args.profile, ping=args.ping, timeout=args.timeout,
                                pcap_path=args.pcap, conn=args.conn,
                                keylog_path=args.keylog))
        except KeyboardInterrupt:
            return 130
        print(json.dumps(report, indent=2) if args.json else render(report))
        if not report["ok"]:
            if args.json:
                print(f"erebus: {report['error']}", file=sys.stderr)
            return 2 if report["stage"] == "config" else 1
        return 0
    if args.command == "check":
        from .check import main as check_main
        return check_main(args.profile, args.json, conn=args.conn)
    if args.command == "up":
        from .up import run_up
        return _run(run_up(args.profile, local_forwards=args.local_forwards,
                           remote_forwards=args.remote_forwards,
                           http_proxy=args.http_proxy, socks=args.socks,
                           socks_auth=args.socks_auth,
                           proxy_auth_file=args.proxy_auth_file, pcap_path=args.pcap,
                           timeout=args.timeout, conn=args.conn, control=args.control,
                           print_env=args.print_env, pac=args.pac, metrics=args.metrics,
                           keylog_path=args.keylog))
    if args.command == "run":
        from .run import run_run
        return _run(run_run(args.profile, args.command_argv, shell=args.shell,
                            everything=args.everything,
                            local_forwards=args.local_forwards,
                            remote_forwards=args.remote_forwards,
                            http_proxy=args.http_proxy, socks=args.socks,
                            proxy_auth_file=args.proxy_auth_file, pcap_path=args.pcap,
                            timeout=args.timeout, conn=args.conn, keylog_path=args.keylog))
    if args.command == "nc":
        from .nc import main as nc_main
        return nc_main(args, _run)
    if args.command == "status":
        from .status import main as status_main
        return status_main(args.socket, json_out=args.json, watch=args.watch)
    return 2


def run() -> None:
    try:
        sys.exit(main())
    except ConfigError as exc:
        print(f"erebus: {exc}", file=sys.stderr)
        sys.exit(2)
    except (SessionError, ErebusError) as exc:
        print(f"erebus: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:                    # e.g. a listener's port already in use
        print(f"erebus: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:                  # noqa: BLE001 - a bug: say so, in one line
        logging.getLogger("erebus").debug("internal error", exc_info=True)
        print(f"erebus: internal error: {type(exc).__name__}: {exc} (run with -vv for "
              "the traceback)", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    run()
