"""WireGuard: the profile (wg-quick's .conf), and the core behind erebus.session's
contract (crypto, Noise IK handshake, session)."""
