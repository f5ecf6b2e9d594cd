"""One TCP connection (RFC 9293) as an explicit, sans-IO state machine.

Segments and the current time go in (:meth:`TcpConnection.receive`); TCP
segments to send come out (:meth:`TcpConnection.output`), with the next
deadline (:meth:`TcpConnection.timer`) and :meth:`TcpConnection.handle_timer`.
The application side is plain calls: :meth:`send` (bounded send buffer),
:meth:`read` (bounded receive buffer: the advertised window is what the reader
has room for, so a slow reader slows the sender), :meth:`shutdown` (FIN after
the queued data), :meth:`abort` (RST).

Inside, sequence numbers are turned into unbounded stream offsets at the
edge, so no comparison in here has to think about the 2**32 wrap:
``snd_una``/``snd_nxt`` count data bytes of our stream, ``rcv_nxt`` bytes of
theirs.  SYN and FIN take their sequence numbers just before and after the
data.

What is implemented: active and passive open (the listener lives in the
stack), MSS from the MTU, window scaling and timestamps (RFC 7323),
SACK-permitted and SACK blocks for the peer (RFC 2018) and a SACK scoreboard
that steers our retransmissions, RFC 6298 retransmission timer with Karn's
rule, slow start and congestion avoidance (RFC 5681), fast retransmit and
NewReno fast recovery (RFC 6582), an out-of-order queue that holds each
byte once and whose cost (bytes and the objects holding them) is kept within
the receive buffer, zero-window probes, FIN and half-close both ways, RST handling
with RFC 5961 challenge ACKs, TIME_WAIT, and no keepalive unless asked for.

The receive side's bytes (RCV.NXT, unread data, the out-of-order queue, the order of
our SACK blocks) are a :class:`~erebus.netstack.reassembly.StreamReassembler`; what
the peer SACKed of ours is a :class:`~erebus.netstack.sack.SackScoreboard`.  Both
work in offsets and are tested alone; sequence numbers stay in here.
"""

from __future__ import annotations

import enum

from ..wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment, build_tcp, seq_diff
from .errors import NetErrorReason, TcpError
from .reassembly import StreamReassembler
from .sack import SackScoreboard

MOD = 1 << 32
_MASK = MOD - 1
_HALF = 1 << 31


class State(enum.Enum):
    # Enum's __hash__ is a Python-level hash(self._name_), paid on every ``in CAN_RECEIVE``
    # of every segment; members are singletons compared by identity, so the identity
    # hash (in C) is as good (and a string's hash is per-process random anyway)
    __hash__ = object.__hash__

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


SYNCHRONIZED = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                          State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT})
# States in which we may still send data.
CAN_SEND = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
# States in which data from the peer is still accepted.
CAN_RECEIVE = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})

# RFC 6298 (with Linux's 200 ms floor: a 1 s floor makes every tail loss cost a second)
RTO_INITIAL = 1.0
RTO_MIN = 0.2
RTO_MAX = 60.0
CLOCK_G = 0.001
MAX_RETRIES = 15          # like Linux's tcp_retries2: then the connection is given up
MAX_SYN_RETRIES = 6
MAX_KEEPALIVE_PROBES = 9
MSL = 30.0                # TIME_WAIT lasts 2 * MSL
DUPACK_THRESHOLD = 3
REORDERING_MAX = 300      # cap of the learned reordering threshold (Linux's tcp_max_reordering)
INITIAL_CWND_SEGMENTS = 10   # RFC 6928
OOW_ACK_INTERVAL = 0.5    # Linux's tcp_invalid_ratelimit (see TcpConnection._oow_ack)
PMTU_RESENDS_MAX = 8      # "too big" messages that resend the flight (TcpConnection.path_mtu)
# At most this many segments of new data leave in one output pass; the rest waits for the
# next ACK or the pacing deadline (the time those segments take at the pacing rate).  A
# flight of hundreds of datagrams at once overflows the outer UDP socket's buffer (a full
# buffer drops them: loss we caused ourselves) and the queues behind it.
MAX_BURST_SEGMENTS = 32
PACING_SS_RATIO = 2.0     # pacing rate = ratio * cwnd / srtt (Linux's tcp_pacing_ss_ratio)
PACING_CA_RATIO = 1.2     # (tcp_pacing_ca_ratio)
PACING_MIN_GAP = 0.0005   # a shorter pacing deadline is not worth a timer

DEFAULT_RCV_BUF = 1 << 20
DEFAULT_SND_BUF = 1 << 20
RCV_WSCALE_MAX = 14


class TcpConnection:
    """A transmission control block and everything it does."""

    def __init__(self, local_ip: int, local_port: int, remote_ip: int, remote_port: int, *,
                 iss: int, mss: int, now: float, rcv_buf: int = DEFAULT_RCV_BUF,
                 snd_buf: int = DEFAULT_SND_BUF, keepalive: float | None = None):
        self.local_ip, self.local_port = local_ip, local_port
        self.remote_ip, self.remote_port = remote_ip, remote_port
        self.state = State.CLOSED
        self.failure: TcpError | None = None   # why the connection ended abnormally
        self.listener = None              # the listener that accepted it (passive open)
        self.last_icmp_error: TcpError | None = None
        self.pmtu_resends = 0             # flights resent at once for a lower path MTU
        self.created = now
        # -- send side (offsets into our byte stream) --
        self.iss = iss
        self.snd_una = 0                 # oldest unacknowledged data byte
        self.snd_nxt = 0                 # next data byte to send
        self.snd_max = 0                 # highest data offset ever sent
        self._sbuf = bytearray()         # data from snd_una on (unacked + unsent)
        self.snd_buf_limit = snd_buf
        self.snd_wnd = 0                 # peer's window (bytes, scaled)
        self._snd_wl1 = 0                # their seq (offset) of the last window update
        self._snd_wl2 = 0                # our ack offset of the last window update
        self._syn_acked = False
        self._syn_sent = False
        self._fin_queued = False         # shutdown() called: FIN after the data
        self._fin_sent = False
        self._fin_used = False           # a FIN went out once (an RTO may clear _fin_sent)
        self._fin_acked = False
        # -- receive side --
        self.irs = 0
        self._rx = StreamReassembler(rcv_buf)   # rcv_nxt, unread and out-of-order data
        self._ooo = self._rx.ooo         # data ahead of rcv_nxt
        self._rcv_adv = 0                # right edge (offset) we advertised
        self.fin_received = False
        self._fin_offset: int | None = None  # their FIN's offset once seen (even OOO)
        # -- options --
        self.mss_local = mss             # what we announce (from our MTU)
        self.mss = min(mss, 536)         # what we send until the peer announces
        self.rcv_wscale = 0
        self.snd_wscale = 0
        self._wscale_ok = False
        self.sack_ok = False
        self.ts_ok = False
        self._ts_recent = 0
        self._ts_base = now
        # -- timers, RTT, congestion --
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = RTO_INITIAL
        self._rtx_deadline: float | None = None
        self._retries = 0
        self._timed_off: int | None = None     # offset whose ACK times an RTT (no TS)
        self._timed_at = 0.0
        self._persist_deadline: float | None = None
        self._persist_backoff = 0
        self._pace_deadline: float | None = None   # a burst was cut: send more then
        self._time_wait_deadline: float | None = None
        self.keepalive = keepalive                  # idle seconds before probing; None: off
        self.keepalive_interval = 75.0
        self._keepalive_retries = 0
        self._last_recv = now
        self._keepalive_deadline: float | None = None
        self.cwnd = INITIAL_CWND_SEGMENTS * self.mss
        self.ssthresh = 1 << 30
        self._dupacks = 0
        # reordering: the dupack/SACK threshold (segments) grows to the reordering seen
        # when a fast retransmission proves spurious (Eifel by timestamps, RFC 3522/4015;
        # DSACK, RFC 3708), and the reduction of that episode is undone
        self.reordering = DUPACK_THRESHOLD
        self.spurious_undos = 0
        self._undo: tuple[int, int, int] | None = None   # cwnd, ssthresh, snd_una before it
        self._undo_ts: int | None = None            # our TS value of its first resend
        self._undo_retrans = 0                      # its resends not yet DSACKed
        self._fack = 0                              # highest byte ever SACKed (+1)
        self._recover: int | None = None       # NewReno: snd_max when recovery began
        self._rexmit_from: int | None = None   # next offset to retransmit in recovery
        self._sacked = SackScoreboard()        # what the peer SACKed of our stream
        self._ack_pending = False
        self._challenge_acks = 0
        self._last_oow_ack: float | None = None
        self.oow_acks_suppressed = 0
        # -- bookkeeping --
        self.bytes_in = self.bytes_out = 0
        self.retransmits = 0
        self.segments_in = self.segments_out = 0
        self.dropped = 0

    @property
    def error(self) -> str | None:
        """Why the connection ended abnormally, in words (``failure`` has the reason)."""
        return str(self.failure) if self.failure is not None else None

    # -- the receive side's state, by its RFC names ---------------------------------------

    @property
    def rcv_nxt(self) -> int:
        """Next data offset expected from the peer."""
        return self._rx.rcv_nxt

    @property
    def rcv_buf(self) -> int:
        """The bound of the unread and the out-of-order data together."""
        return self._rx.rcv_buf

    @property
    def _rbuf_len(self) -> int:
        return self._rx.buffered

    @property
    def ooo_pruned(self) -> int:
        """Out-of-order bytes dropped to stay within rcv_buf."""
        return self._rx.pruned

    # -- naming --------------------------------------------------------------------------

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.remote_ip, self.remote_port, self.local_ip, self.local_port)

    def __repr__(self) -> str:
        from ..wire.inet import addr_str
        return (f"<TCP {addr_str(self.local_ip)}:{self.local_port} -> "
                f"{addr_str(self.remote_ip)}:{self.remote_port} {self.state.value}>")

    # -- sequence numbers <-> offsets -----------------------------------------------------

    def _snd_seq(self, off: int) -> int:
        return (self.iss + 1 + off) % MOD

    def _rcv_seq(self, off: int) -> int:
        return (self.irs + 1 + off) % MOD

    def _ack_off(self, ack: int) -> int:
        """Offset in our stream that an ACK number points at (relative to snd_una)."""
        return self.snd_una + seq_diff(ack, self._snd_seq(self.snd_una))

    def _seq_off(self, seq: int) -> int:
        rn = self._rx.rcv_nxt
        return rn + seq_diff(seq, self._rcv_seq(rn))

    def _ts_now(self, now: float) -> int:
        return int((now - self._ts_base) * 1000) % MOD

    # -- opening -------------------------------------------------------------------------

    def open_active(self, now: float) -> None:
        """Connect: send SYN (RFC 9293 OPEN call, active)."""
        self.state = State.SYN_SENT
        self._arm_rtx(now)

    def open_passive(self, syn: TcpSegment, now: float) -> None:
        """Answer a SYN that a listener accepted: SYN-RECEIVED, SYN-ACK to send."""
        self.irs = syn.seq
        self._take_syn_options(syn)
        self.snd_wnd = syn.window         # never scaled in a SYN
        self.state = State.SYN_RECEIVED
        self._last_recv = now
        self._arm_rtx(now)

    def _take_syn_options(self, syn: TcpSegment) -> None:
        if syn.mss:
            self.mss = max(64, min(syn.mss, self.mss_local))
        else:
            self.mss = min(536, self.mss_local)
        self.cwnd = INITIAL_CWND_SEGMENTS * self.mss
        if syn.wscale is not None and (self.state is State.CLOSED or self._wscale_ok
                                       or self.state is State.SYN_SENT):
            self._wscale_ok = True
            self.snd_wscale = min(syn.wscale, RCV_WSCALE_MAX)
            self.rcv_wscale = self._our_wscale()
        else:
            self._wscale_ok = False
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = bool(syn.sack_permitted)
        if syn.ts_val is not None:
            self.ts_ok = True
            self._ts_recent = syn.ts_val
        else:
            self.ts_ok = False

    def _our_wscale(self) -> int:
        shift = 0
        while (self.rcv_buf >> shift) > 0xFFFF and shift < RCV_WSCALE_MAX:
            shift += 1
        return shift

    # -- application side ----------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data; returns how much fit in the send buffer (may be 0)."""
        if self.state not in CAN_SEND and self.state not in (State.SYN_SENT,
                                                             State.SYN_RECEIVED):
            if self.failure is not None:
                raise TcpError(self.failure.reason, str(self.failure))
            raise TcpError(NetErrorReason.CLOSED, f"cannot send in state {self.state.value}")
        if self._fin_queued:
            raise TcpError(NetErrorReason.CLOSED, "cannot send after shutdown")
        room = self.snd_buf_limit - len(self._sbuf)
        if room <= 0:
            return 0
        n = min(room, len(data))
        self._sbuf += data[:n] if n < len(data) else data
        return n

    @property
    def send_space(self) -> int:
        return max(0, self.snd_buf_limit - len(self._sbuf))

    @property
    def unacked(self) -> int:
        """Bytes queued or in flight that the peer has not acknowledged."""
        return len(self._sbuf)

    @property
    def readable(self) -> int:
        return self._rx.buffered

    def read(self, limit: int = -1) -> list[bytes]:
        """Take in-order data (in chunks, small ones joined) up to ``limit`` bytes."""
        out = self._rx.read(limit)
        if out and self.state in SYNCHRONIZED:
            # window update when the reader opened a worthwhile amount of room
            if self._rx.window() - (self._rcv_adv - self.rcv_nxt) >= min(
                    self.rcv_buf // 2, 2 * self.mss_local):
                self._ack_pending = True
        return out

    @property
    def at_eof(self) -> bool:
        """The peer sent FIN and every byte before it has been read."""
        return self.fin_received and not self._rx.has_unread

    @property
    def fin_queued(self) -> bool:
        """shutdown() was called: a FIN follows the queued data."""
        return self._fin_queued

    def shutdown(self) -> None:
        """Half-close: FIN once the queued data is out (RFC 9293 CLOSE call)."""
        if self._fin_queued or self.state in (State.CLOSED, State.TIME_WAIT):
            return
        if self.state is State.SYN_SENT:
            self._enter_closed(None)
            return
        self._fin_queued = True

    def abort(self, now: float) -> bytes | None:
        """RST to the peer (unless it never heard of us) and forget the connection."""
        seg = None
        if self.state in SYNCHRONIZED or self.state is State.SYN_RECEIVED:
            if self.state is not State.TIME_WAIT:
                seg = self._build(self._snd_seq(self.snd_nxt) if self._syn_acked
                                  else (self.iss + 1) % MOD, RST | ACK, now, b"")
        self._enter_closed(None)
        return seg

    def end_time_wait(self) -> None:
        """Leave TIME-WAIT at once (the stack's table of them is full)."""
        if self.state is State.TIME_WAIT:
            self._enter_closed(None)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # -- timers --------------------------------------------------------------------------

    def timer(self) -> float | None:
        deadlines = [d for d in (self._rtx_deadline, self._persist_deadline,
                                 self._time_wait_deadline, self._keepalive_deadline,
                                 self._pace_deadline)
                     if d is not None]
        return min(deadlines) if deadlines else None

    def _arm_rtx(self, now: float) -> None:
        self._rtx_deadline = now + self.rto

    def handle_timer(self, now: float) -> None:
        if self._time_wait_deadline is not None and now >= self._time_wait_deadline:
            self._time_wait_deadline = None
            self._enter_closed(None)
            return
        if self._pace_deadline is not None and now >= self._pace_deadline:
            self._pace_deadline = None             # output() sends the next burst
        if self._rtx_deadline is not None and now >= self._rtx_deadline:
            self._on_rto(now)
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._persist_deadline = None
            self._send_probe = True
            self._persist_backoff += 1
        if self._keepalive_deadline is not None and now >= self._keepalive_deadline:
            self._keepalive_retries += 1
            if self._keepalive_retries > MAX_KEEPALIVE_PROBES:
                self._enter_closed(TcpError(NetErrorReason.TIMED_OUT,
                                            "connection timed out (keepalive)"))
                return
            self._keepalive_probe = True
            self._keepalive_deadline = now + self.keepalive_interval

    def _on_rto(self, now: float) -> None:
        self._retries += 1
        limit = MAX_SYN_RETRIES if self.state in (State.SYN_SENT, State.SYN_RECEIVED) \
            else MAX_RETRIES
        if self._retries > limit:
            self._enter_closed(TcpError(NetErrorReason.TIMED_OUT, "connection timed out"))
            return
        self.rto = min(self.rto * 2, RTO_MAX)
        self._timed_off = None                     # Karn: no sample from a resend
        if self.state in SYNCHRONIZED and self.snd_wnd == 0 and \
                self.snd_una == self.snd_nxt:
            # nothing in flight but a probe: the persist timer's business
            self._rtx_deadline = None
            self._persist_deadline = now
            return
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            self._syn_sent = False                  # send the SYN (or SYN-ACK) again
            if self.state is State.SYN_SENT:
                self.cwnd = self.mss
        else:
            flight = self.snd_max - self.snd_una
            self.ssthresh = max(flight // 2, 2 * self.mss)
            self.cwnd = self.mss
            self._recover = self.snd_max   # losses before this point don't start recovery
            self._rexmit_from = None
            self._dupacks = 0
            self._sacked.clear()            # RFC 2018: SACK info is only advisory
            self._undo = self._undo_ts = None   # an RTO's reduction is not undone
            self.snd_nxt = self.snd_una     # go back: resend from the first hole
            if self._fin_sent and not self._fin_acked:
                self._fin_sent = False
        self._rtx_deadline = now + self.rto

    # -- input ---------------------------------------------------------------------------

    def receive(self, seg: TcpSegment, now: float) -> bytes | None:
        """Process one segment.  Returns a RST to send at once, if the segment calls
        for one outside the connection's normal output (RFC 9293 3.10.7)."""
        self.segments_in += 1
        st = self.state
        if st is State.CLOSED:
            return None
        if st is State.SYN_SENT:
            return self._receive_syn_sent(seg, now)
        flags = seg.flags
        if st is State.TIME_WAIT and flags & RST:
            return None                     # RFC 1337: TIME-WAIT ignores RST
        payload = seg.payload
        rn = self._rx.rcv_nxt
        seq_off = rn + (((seg.seq - self.irs - 1 - rn + _HALF) & _MASK) - _HALF)  # _seq_off
        seg_len = len(payload) + (flags & FIN)
        # 1. sequence check (acceptability test)
        wnd = max(self._rcv_adv - rn, 0)
        if flags & SYN and st is State.SYN_RECEIVED and seg.seq == self.irs:
            self._ack_pending = True        # our SYN-ACK was lost: it is resent by the timer
            return None
        # the common case first: the segment starts inside the window (acceptable
        # whatever its length; _acceptable has the rest of RFC 9293's table)
        if not 0 <= seq_off - rn - self.fin_received < wnd and \
                not self._acceptable(seq_off, seg_len, wnd):
            if not flags & RST:
                self._oow_ack(seg, now)
            self.dropped += 1
            return None
        self._last_recv = now
        if self.keepalive:
            self._keepalive_deadline = now + self.keepalive
            self._keepalive_retries = 0
        # 2. RST (RFC 5961: exact match resets, otherwise a challenge ACK)
        if flags & RST:
            if seq_off == self.rcv_nxt + self.fin_received:
                self._enter_closed(TcpError(NetErrorReason.RESET, "connection reset by peer"))
            else:
                self._challenge_ack()
            return None
        # 4. SYN in a synchronized state: challenge ACK
        if flags & SYN:
            self._challenge_ack()
            return None
        # 5. ACK
        if not flags & ACK:
            return None
        if self.ts_ok and seg.ts_val is not None and seq_off <= self.rcv_nxt:
            self._ts_recent = seg.ts_val
        if st is State.SYN_RECEIVED:
            ack_off = self._ack_off_syn(seg.ack)
            if ack_off != 0:
                return self._rst_for(seg)
            self._syn_acked = True
            self.state = st = State.ESTABLISHED
            self._retries = 0
            self._rtx_deadline = None
            self._sample_rtt_syn(now)
            self._update_window(seg, seq_off, 0, force=True)
        else:
            if not self._process_ack(seg, seq_off, now):
                self._oow_ack(seg, now)     # acks what was never sent: ACK, drop it
                return None
            if self.state is State.CLOSED:
                return None
            st = self.state
        # 7. data
        if payload:
            if st is State.ESTABLISHED or st in CAN_RECEIVE:
                self._ack_pending = True                                # _receive_data
                self.bytes_in += self._rx.receive(seq_off, payload, self._rcv_adv)
            else:
                self.dropped += 1
        # 8. FIN
        if flags & FIN:
            fin_off = seq_off + len(payload)
            if self._fin_offset is None:
                self._fin_offset = fin_off
        self._check_fin(now)
        return None

    def _acceptable(self, seq_off: int, seg_len: int, wnd: int) -> bool:
        rn = self._rx.rcv_nxt + self.fin_received     # their FIN takes one sequence number
        if self.fin_received and wnd == 0:
            wnd = 1
        if seg_len == 0:
            if wnd == 0:
                return seq_off == rn
            return rn <= seq_off < rn + wnd or seq_off == rn
        if wnd == 0:
            return False
        end = seq_off + seg_len - 1
        return (rn <= seq_off < rn + wnd) or (rn <= end < rn + wnd) or \
            (seq_off < rn and end >= rn + wnd - 1)

    def _ack_off_syn(self, ack: int) -> int:
        """In SYN states our SYN is at offset -1: acking it gives offset 0."""
        return seq_diff(ack, (self.iss + 1) % MOD)

    def _oow_ack(self, seg: TcpSegment, now: float) -> None:
        """The ACK that answers an unacceptable segment.  Two stacks that disagree
        about the sequence space (a host injected data, or ACKs of data never sent)
        would answer each other's pure ACKs for ever: like Linux's
        tcp_invalid_ratelimit, at most one answer to a segment without data per
        OOW_ACK_INTERVAL."""
        if not seg.payload and not seg.flags & FIN:
            last = self._last_oow_ack
            if last is not None and now - last < OOW_ACK_INTERVAL:
                self.oow_acks_suppressed += 1
                return
            self._last_oow_ack = now
        self._ack_pending = True

    def _challenge_ack(self) -> None:
        self._challenge_acks += 1
        self._ack_pending = True

    def _rst_for(self, seg: TcpSegment) -> bytes:
        return build_tcp(self.local_ip, self.remote_ip, self.local_port, self.remote_port,
                         seg.ack, 0, RST, 0)

    def _receive_syn_sent(self, seg: TcpSegment, now: float) -> bytes | None:
        flags = seg.flags
        if flags & ACK:
            ack_ok = self._ack_off_syn(seg.ack) == 0
            if not ack_ok:
                if flags & RST:
                    return None
                return self._rst_for(seg)
            if flags & RST:
                self._enter_closed(TcpError(NetErrorReason.REFUSED, "connection refused"))
                return None
        elif flags & RST:
            return None
        if not flags & SYN:
            return None
        self.irs = seg.seq
        self._take_syn_options(seg)
        self._last_recv = now
        if flags & ACK:
            self._syn_acked = True
            self._retries = 0
            self._rtx_deadline = None
            self._sample_rtt_syn(now)
            self.snd_wnd = seg.window        # a SYN's window is never scaled
            self._snd_wl1 = 0
            self._snd_wl2 = 0
            self.state = State.ESTABLISHED
            self._ack_pending = True
            if seg.payload:
                self._receive_data(0, seg.payload)
            if flags & FIN:
                self._fin_offset = len(seg.payload)
                self._check_fin(now)
        else:
            # simultaneous open: SYN-RECEIVED, answer with SYN-ACK
            self.snd_wnd = seg.window
            self.state = State.SYN_RECEIVED
            self._syn_sent = False
            self._arm_rtx(now)
        return None

    def _sample_rtt_syn(self, now: float) -> None:
        if self._retries == 0 and self.retransmits == 0:
            self._rtt_sample(now - self.created)

    def _rtt_sample(self, r: float) -> None:
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.rto = min(max(self.srtt + max(CLOCK_G, 4 * self.rttvar), RTO_MIN), RTO_MAX)

    def _process_ack(self, seg: TcpSegment, seq_off: int, now: float) -> bool:
        """False if the segment is to be dropped (RFC 9293 3.10.7.4, fifth check: an
        ACK of something not yet sent is answered with an ACK, the segment dropped)."""
        una = self.snd_una
        ack_off = una + (((seg.ack - self.iss - 1 - una + _HALF) & _MASK) - _HALF)  # _ack_off
        fin_extra = 1 if self._fin_used else 0
        top = self.snd_max + fin_extra
        if ack_off > top:
            self.dropped += 1
            return False
        if self.sack_ok and seg.sack_blocks:
            self._take_sack(seg.sack_blocks, ack_off)
        acked = ack_off - self.snd_una
        if ack_off > self.snd_una or (self._fin_used and not self._fin_acked
                                      and ack_off == self.snd_max + 1):
            data_acked = min(ack_off, self.snd_max) - self.snd_una
            if data_acked > 0:
                del self._sbuf[:data_acked]
                self.snd_una += data_acked
                if self.snd_nxt < self.snd_una:
                    self.snd_nxt = self.snd_una
                self._sacked.advance(self.snd_una)
            if self._fin_used and ack_off == self.snd_max + 1:
                self._fin_acked = True
                self._fin_sent = True       # not to be sent again after an RTO rewind
            # RTT: timestamps when we have them, else the one timed segment (Karn)
            if self.ts_ok and seg.ts_ecr:
                self._rtt_sample(((self._ts_now(now) - seg.ts_ecr) % MOD) / 1000.0)
            elif self._timed_off is not None and ack_off > self._timed_off:
                self._rtt_sample(now - self._timed_at)
                self._timed_off = None
            self._retries = 0
            self._persist_backoff = 0
            self._pace_deadline = None          # ACK-clocked: the next burst may go
            if self._undo_ts is not None and self.ts_ok and seg.ts_ecr and \
                    seq_diff(seg.ts_ecr, self._undo_ts) < 0:
                # Eifel: the ACK echoes the original's timestamp, not the resend's
                self._undo_recovery()
            self._on_new_ack(ack_off, acked, now)
            if self.snd_una == self.snd_max and (not self._fin_used or self._fin_acked):
                self._rtx_deadline = None
            else:
                self._arm_rtx(now)
        elif ack_off == self.snd_una and not seg.payload and not seg.flags & FIN \
                and self.snd_max > self.snd_una \
                and (seg.window << self.snd_wscale) == self.snd_wnd:
            self._on_dupack(now)
        self._update_window(seg, seq_off, ack_off)
        if self.snd_wnd == 0:
            self._retries = 0              # a peer that answers probes is alive
        # state changes driven by the ACK of our FIN
        if self._fin_acked:
            st = self.state
            if st is State.FIN_WAIT_1:
                self.state = State.FIN_WAIT_2
            elif st is State.CLOSING:
                self._enter_time_wait(now)
            elif st is State.LAST_ACK:
                self._enter_closed(None)
        return True

    def _on_new_ack(self, ack_off: int, acked: int, now: float) -> None:
        mss = self.mss
        if self._recover is not None and self._rexmit_from is not None:
            if ack_off >= self._recover:
                # full ACK: leave fast recovery (RFC 6582 3.2 step 3)
                flight = self.snd_max - self.snd_una
                self.cwnd = min(self.ssthresh, max(flight, mss) + mss)
                self._recover = None
                self._rexmit_from = None
                self._dupacks = 0
            else:
                # partial ACK: retransmit the next hole, deflate the window
                self._rexmit_from = max(self._rexmit_from, self.snd_una)
                self.cwnd = max(self.cwnd - acked + mss, mss)
                self._arm_rtx(now)
            return
        if self._recover is not None and ack_off >= self._recover:
            self._recover = None
        self._dupacks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, mss)                        # slow start
        else:
            self.cwnd += max(1, mss * mss // self.cwnd)        # congestion avoidance

    def _on_dupack(self, now: float) -> None:
        self._dupacks += 1
        mss = self.mss
        if self._rexmit_from is not None:
            self.cwnd += mss                      # inflate: a segment has left the network
            return
        if self._dupacks >= self.reordering or (
                self.sack_ok and self._sacked and
                self._sacked.sacked_bytes() >= self.reordering * mss):
            if self._recover is not None and self.snd_una < self._recover:
                return                            # still inside the last recovery's window
            flight = self.snd_max - self.snd_una
            self._undo = (self.cwnd, self.ssthresh, self.snd_una)
            self._undo_ts = self._ts_now(now) if self.ts_ok else None
            self._undo_retrans = 0
            self.ssthresh = max(flight // 2, 2 * mss)
            self.cwnd = self.ssthresh + DUPACK_THRESHOLD * mss
            self._recover = self.snd_max
            self._rexmit_from = self.snd_una
            self._timed_off = None
            self._arm_rtx(now)

    def _update_window(self, seg: TcpSegment, seq_off: int, ack_off: int, *,
                       force: bool = False) -> None:
        if force or self._snd_wl1 < seq_off or (self._snd_wl1 == seq_off
                                                and self._snd_wl2 <= ack_off):
            self.snd_wnd = seg.window << self.snd_wscale
            self._snd_wl1 = seq_off
            self._snd_wl2 = ack_off
        if self.snd_wnd == 0 and len(self._sbuf) > self.snd_nxt - self.snd_una:
            if self._persist_deadline is None and self.snd_una == self.snd_nxt:
                self._rtx_deadline = None
                self._persist_deadline = self._last_recv + min(
                    self.rto * (1 << min(self._persist_backoff, 6)), RTO_MAX)
        elif self.snd_wnd:
            self._persist_deadline = None
            self._persist_backoff = 0

    # SACK scoreboard -----------------------------------------------------------------

    def _take_sack(self, blocks, ack_off: int) -> None:
        una = self.snd_una
        base = self._snd_seq(una)
        ranges = [(una + seq_diff(left, base), una + seq_diff(right, base))
                  for left, right in blocks]
        s, e = ranges[0]
        if e <= ack_off or (len(ranges) > 1 and ranges[1][0] <= s and e <= ranges[1][1]):
            # D-SACK (RFC 2883): a duplicate arrived; if it was one of the episode's
            # resends and all of them turn out duplicates, the episode was spurious
            if self._undo is not None and self._undo_retrans > 0:
                self._undo_retrans -= max(1, (e - s + self.mss - 1) // self.mss)
                if self._undo_retrans <= 0:
                    self._undo_recovery()
            ranges = ranges[1:]
        for _, e in ranges:
            if e > self._fack:
                self._fack = min(e, self.snd_max)
        self._sacked.add(ranges, una, self.snd_max)

    def _undo_recovery(self) -> None:
        """The fast retransmission was spurious (reordering, not loss): restore the
        window from before it, stop resending, and raise the threshold to the
        reordering seen so that the same depth does not trigger it again."""
        if self._undo is None:
            return
        cwnd, ssthresh, una = self._undo
        self.cwnd = max(self.cwnd, cwnd)
        self.ssthresh = max(self.ssthresh, ssthresh)
        depth = (self._fack - una) // max(self.mss, 1)
        self.reordering = min(max(self.reordering, depth + 1), REORDERING_MAX)
        self.spurious_undos += 1
        self._undo = self._undo_ts = None
        self._undo_retrans = 0
        self._recover = self._rexmit_from = None
        self._dupacks = 0

    # receiving data ---------------------------------------------------------------------

    def _receive_data(self, off: int, payload) -> None:
        self._ack_pending = True
        self.bytes_in += self._rx.receive(off, payload, self._rcv_adv)

    def _sack_blocks(self) -> list[tuple[int, int]]:
        """Up to 3 (4 without timestamps) SACK blocks: the run holding the most recently
        received segment first, then the other recent ones (RFC 2018 section 4)."""
        return [(self._rcv_seq(s), self._rcv_seq(e))
                for s, e in self._rx.sack_ranges(3 if self.ts_ok else 4)]

    def _check_fin(self, now: float) -> None:
        if self._fin_offset is None or self.fin_received or self.rcv_nxt != self._fin_offset:
            return
        self.fin_received = True
        self._ack_pending = True
        st = self.state
        if st in (State.ESTABLISHED, State.SYN_RECEIVED):
            self.state = State.CLOSE_WAIT
        elif st is State.FIN_WAIT_1:
            if self._fin_acked:
                self._enter_time_wait(now)
            else:
                self.state = State.CLOSING
        elif st is State.FIN_WAIT_2:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        self.state = State.TIME_WAIT
        self._rtx_deadline = None
        self._persist_deadline = self._pace_deadline = None
        self._keepalive_deadline = None
        self._time_wait_deadline = now + 2 * MSL
        self._sbuf = bytearray()
        self._ooo.clear()

    def _enter_closed(self, failure: TcpError | None) -> None:
        if failure is not None and self.failure is None:
            self.failure = failure
        self.state = State.CLOSED
        self._rtx_deadline = self._persist_deadline = self._pace_deadline = None
        self._time_wait_deadline = self._keepalive_deadline = None
        self._sbuf = bytearray()
        self._ooo.clear()
        self._ack_pending = False

    def quotes_our_segment(self, seq: int) -> bool:
        """Whether a sequence number quoted by an ICMP error is one we have in flight
        (RFC 5927 4.1, as Linux's tcp_v4_err checks): else the error is forged or
        stale and is ignored."""
        if not self._syn_acked:
            return seq == self.iss
        d = seq_diff(seq, self._snd_seq(self.snd_una))
        return 0 <= d <= self.snd_max - self.snd_una + (1 if self._fin_used else 0)

    def path_mtu(self, mss: int) -> bool:
        """A "fragmentation needed" / "packet too big" quoting a segment of ours: the
        path carries segments of at most ``mss`` bytes (its MTU less the IP and TCP
        headers).  Only ever lowers the MSS (RFC 1191 / RFC 8201: an increase is never
        believed).  What is in flight was too big, not lost to congestion: it is sent
        again at once from the first unacknowledged byte, in segments of the new size,
        with the window left as it is (as Linux's tcp_simple_retransmit does).  A real
        path lowers its MTU in one or two steps; a sender walking it down a byte at a
        time would have every step resend the whole flight, so only the first
        PMTU_RESENDS_MAX steps of a connection do; later ones only lower the MSS and
        leave what was in flight to loss recovery.  True if the MSS changed."""
        if mss >= self.mss:
            return False
        self.mss = mss
        self.mss_local = min(self.mss_local, mss)
        if (self.state not in SYNCHRONIZED or self.snd_max == self.snd_una
                or self.pmtu_resends >= PMTU_RESENDS_MAX):
            return True
        self.pmtu_resends += 1
        self.snd_nxt = self.snd_una
        self._rexmit_from = None
        self._recover = self.snd_max       # what was in flight starts no fast recovery
        self._dupacks = 0
        self._sacked.clear()
        self._timed_off = None             # Karn: no sample from a resend
        if self._fin_sent and not self._fin_acked:
            self._fin_sent = False
        return True

    def icmp_unreachable(self, error: TcpError) -> None:
        """An ICMP error about this connection: fatal while connecting (RFC 1122 4.2.3.9
        calls it soft later on; then it is only remembered)."""
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            self._enter_closed(error)
        else:
            self.last_icmp_error = error

    # -- output --------------------------------------------------------------------------

    def _build(self, seq: int, flags: int, now: float, payload, *, syn_opts=False) -> bytes:
        self.segments_out += 1
        window = self._advertise()
        if syn_opts:
            # SYN or SYN-ACK: offer what we support (SYN) or echo what the peer offered
            active = self.state is State.SYN_SENT
            return build_tcp(
                self.local_ip, self.remote_ip, self.local_port, self.remote_port, seq,
                0 if active else (self.irs + 1) % MOD, flags, min(window, 0xFFFF), payload,
                mss=self.mss_local,
                wscale=self._our_wscale() if active or self._wscale_ok else None,
                sack_permitted=active or self.sack_ok,
                ts=(self._ts_now(now), 0 if active else self._ts_recent)
                if active or self.ts_ok else None)
        return build_tcp(self.local_ip, self.remote_ip, self.local_port, self.remote_port,
                         seq, self._rcv_seq(self._rx.rcv_nxt + (1 if self.fin_received else 0)),
                         flags, window >> self.rcv_wscale, payload,
                         sack_blocks=self._sack_blocks() if self.sack_ok and self._ooo.payload else (),
                         ts=(self._ts_now(now), self._ts_recent) if self.ts_ok else None)

    def _advertise(self) -> int:
        """The window to advertise, never shrinking the right edge we offered."""
        rx = self._rx
        rn = rx.rcv_nxt
        wnd = rx.window()
        if wnd < min(rx.rcv_buf // 4, self.mss_local) and wnd < self._rcv_adv - rn:
            wnd = 0                                # receiver-side SWS avoidance
        right = max(self._rcv_adv, rn + wnd)
        max_wnd = 0xFFFF << self.rcv_wscale
        if right - rn > max_wnd:
            right = rn + max_wnd
        self._rcv_adv = max(self._rcv_adv, right)
        return right - rn

    def output(self, now: float) -> list[bytes]:
        """Segments to send now."""
        st = self.state
        out: list[bytes] = []
        if st is State.CLOSED or st is State.LISTEN:
            return out
        if st is State.SYN_SENT:
            if not self._syn_sent:
                self._syn_sent = True
                out.append(self._build(self.iss, SYN, now, b"", syn_opts=True))
                if self._rtx_deadline is None:
                    self._arm_rtx(now)
            return out
        if st is State.SYN_RECEIVED:
            if not self._syn_sent:
                self._syn_sent = True
                out.append(self._build(self.iss, SYN | ACK, now, b"", syn_opts=True))
                if self._rtx_deadline is None:
                    self._arm_rtx(now)
            if self._ack_pending:
                self._ack_pending = False
            return out
        # payload per segment: the MSS less the options every segment carries (RFC 9293
        # 3.7.1), so that no packet exceeds the MTU
        opts = 12 if self.ts_ok else 0
        if self.sack_ok and self._ooo.payload:
            opts += 4 + 8 * (3 if self.ts_ok else 4)
        mss = self.mss - opts
        # retransmissions in fast recovery (holes first, one per call per hole budget)
        if self._rexmit_from is not None:
            budget = max(1, (self.cwnd - self._pipe()) // mss) if self._sacked else 1
            while budget > 0:
                hole = self._sacked.next_hole(max(self._rexmit_from, self.snd_una), mss,
                                              self.snd_max)
                if hole is None or hole[0] >= self.snd_max:
                    break
                start, end = hole
                if start > self.snd_una and self._sacked.sacked_above(end) < \
                        self.reordering * mss:
                    break       # RFC 6675 IsLost: not yet, fewer than DupThresh above it
                out.append(self._data_segment(start, end, now, retransmit=True))
                self._undo_retrans += 1
                self._rexmit_from = end
                budget -= 1
                if not self._sacked:
                    break
        # new data (or go-back-N resend after an RTO), at most MAX_BURST_SEGMENTS a pass
        total = self.snd_una + len(self._sbuf)
        burst = 0
        if self._pace_deadline is not None and now >= self._pace_deadline:
            self._pace_deadline = None
        # a cut burst waits for an ACK or its deadline
        while self.snd_nxt < total and self._pace_deadline is None:
            if burst >= MAX_BURST_SEGMENTS:
                self._pace_deadline = now + self._pacing_gap(burst * mss)
                break
            flight = self.snd_nxt - self.snd_una if self._rexmit_from is None else \
                self._pipe()
            window = min(self.snd_wnd, self.cwnd)
            usable = window - flight
            remaining = total - self.snd_nxt
            size = min(mss, remaining)
            if usable < size:
                if usable <= 0 or (usable < mss and remaining > usable
                                   and usable < self.snd_wnd // 2):
                    break                               # sender-side SWS avoidance
                size = usable
            if self.snd_nxt < self.snd_max and self._sacked:
                # resending after an RTO: skip what the peer already SACKed
                hole = self._sacked.next_hole(self.snd_nxt, mss, self.snd_max)
                if hole is None:
                    self.snd_nxt = self.snd_max
                    continue
                if hole[0] > self.snd_nxt:
                    self.snd_nxt = hole[0]
                    continue
                size = min(size, hole[1] - self.snd_nxt)
            start = self.snd_nxt
            out.append(self._data_segment(start, start + size, now,
                                          retransmit=start < self.snd_max))
            burst += 1
            self.snd_nxt = start + size
            if self.snd_nxt > self.snd_max:
                self.snd_max = self.snd_nxt
        # zero-window probe: the next byte, sent past the window without advancing
        # snd_nxt; if the peer takes it, its ACK moves snd_una past snd_nxt
        if self._send_probe:
            self._send_probe = False
            if self.snd_wnd == 0 and self.snd_nxt < total:
                out.append(self._data_segment(self.snd_nxt, self.snd_nxt + 1, now,
                                              retransmit=False, probe=True))
                self.snd_max = max(self.snd_max, self.snd_nxt + 1)
                self._persist_deadline = now + min(
                    self.rto * (1 << min(self._persist_backoff, 6)), RTO_MAX)
        # FIN once everything is sent (again after an RTO that rewound snd_nxt)
        if self._fin_queued and not self._fin_sent and self.snd_nxt == total:
            self._fin_sent = self._fin_used = True
            out.append(self._build(self._snd_seq(total), FIN | ACK, now, b""))
            if self.state is State.ESTABLISHED:
                self.state = State.FIN_WAIT_1
            elif self.state is State.CLOSE_WAIT:
                self.state = State.LAST_ACK
            if self._rtx_deadline is None:
                self._arm_rtx(now)
        if self._keepalive_probe:
            # an old sequence number the peer must answer with an ACK (RFC 9293 3.8.4)
            self._keepalive_probe = False
            out.append(self._build(self._snd_seq(self.snd_una - 1), ACK, now, b""))
        if self._ack_pending and not out:
            # a pure ACK carries the highest sequence number sent: after an RTO rewound
            # snd_nxt, an older one would be outside the peer's window and ignored
            out.append(self._build(self._snd_seq(total + 1 if self._fin_sent
                                                 else self.snd_max), ACK, now, b""))
        self._ack_pending = False
        return out

    _send_probe = False
    _keepalive_probe = False

    def _pacing_gap(self, nbytes: int) -> float:
        """How long ``nbytes`` take at the pacing rate (twice cwnd per RTT in slow start,
        1.2 times in congestion avoidance, as Linux paces)."""
        if self.srtt is None or self.srtt <= 0:
            return PACING_MIN_GAP
        ratio = PACING_SS_RATIO if self.cwnd < self.ssthresh else PACING_CA_RATIO
        return max(PACING_MIN_GAP, nbytes * self.srtt / (ratio * max(self.cwnd, self.mss)))

    def _pipe(self) -> int:
        """Bytes believed in flight: sent, not acked, not SACKed (RFC 6675, simplified)."""
        return max(0, self.snd_max - self.snd_una - self._sacked.sacked_bytes())

    def _data_segment(self, start: int, end: int, now: float, *, retransmit: bool,
                      probe: bool = False) -> bytes:
        base = self.snd_una
        payload = memoryview(self._sbuf)[start - base:end - base]
        if retransmit:
            self.retransmits += 1
        elif self._timed_off is None and not self.ts_ok:
            self._timed_off = start
            self._timed_at = now
        self.bytes_out += end - start
        flags = ACK | (PSH if end == base + len(self._sbuf) else 0)
        seg = self._build(self._snd_seq(start), flags, now, payload)
        payload.release()
        if self._rtx_deadline is None and not probe:
            self._arm_rtx(now)
        return seg
