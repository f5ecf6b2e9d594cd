"""erebus: a user-space VPN client with its own IPv4 stack."""

__version__ = "0.1.0"
