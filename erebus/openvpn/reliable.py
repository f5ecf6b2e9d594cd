"""The control channel's reliability layer (OpenVPN's reliable.c), sans-IO.

Each key state has one :class:`ReliableSend` and one :class:`ReliableReceive`.
Message packet ids start at 0 per key and per direction.  The sender keeps at
most ``window`` messages in flight, retransmits each after a timeout that
doubles up to a cap, and forgets a message once it is ACKed; like 2.6 it also
resends a message at once when ACKs for three later messages arrived first (fast
retransmit), which is what keeps a handshake short on a lossy path.  The receiver
delivers messages in order, buffers up to ``window`` ahead, suppresses
duplicates and ACKs everything it accepts (duplicates too, since the peer's
copy of our ACK may have been lost).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

SEND_WINDOW = 6      # TLS_RELIABLE_N_SEND_BUFFERS
RECEIVE_WINDOW = 12  # TLS_RELIABLE_N_REC_BUFFERS
ACK_HISTORY = 8      # RELIABLE_ACK_SIZE: how many sent ACKs are remembered for resending
INITIAL_TIMEOUT = 2.0
MAX_TIMEOUT = 16.0
N_ACK_RETRANSMIT = 3  # as 2.6: a message that 3 later messages' ACKs passed is resent now


@dataclass(slots=True)
class _InFlight:
    packet_id: int
    opcode: int
    payload: bytes
    deadline: float
    timeout: float
    sends: int = 0
    later_acks: int = 0          # ACKs of later messages since this one was last sent
    fast: bool = False           # resend at once (fast retransmit), without backoff


class ReliableSend:
    """Outgoing messages: ids, window, retransmission with backoff."""

    def __init__(self, window: int = SEND_WINDOW, initial_timeout: float = INITIAL_TIMEOUT,
                 max_timeout: float = MAX_TIMEOUT):
        self.window = window
        self.initial_timeout = initial_timeout
        self.max_timeout = max_timeout
        self.next_packet_id = 0
        self._queue: deque[tuple[int, bytes]] = deque()   # not yet given an id
        self._inflight: dict[int, _InFlight] = {}
        self.retransmissions = 0

    def push(self, opcode: int, payload: bytes) -> None:
        self._queue.append((opcode, payload))

    @property
    def next_unassigned(self) -> int:
        """The packet id the next :meth:`push` will get."""
        return self.next_packet_id + len(self._queue)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing waiting for an ACK."""
        return not self._queue and not self._inflight

    def ack(self, packet_id: int) -> bool:
        """Forget an ACKed message; False if it was not in flight (old or bogus ACK).
        Earlier messages still in flight count it towards their fast retransmit."""
        if self._inflight.pop(packet_id, None) is None:
            return False
        for entry in self._inflight.values():
            if entry.packet_id < packet_id:
                entry.later_acks += 1
                if entry.later_acks >= N_ACK_RETRANSMIT and not entry.fast:
                    entry.fast = True
                    entry.deadline = 0.0         # due at the next look
        return True

    def _oldest(self) -> int:
        return min(self._inflight) if self._inflight else self.next_packet_id

    def due(self, now: float) -> list[tuple[int, int, bytes]]:
        """Messages to put on the wire now: (packet_id, opcode, payload), oldest first."""
        out: list[tuple[int, int, bytes]] = []
        for entry in sorted(self._inflight.values(), key=lambda e: e.packet_id):
            if entry.deadline <= now:
                if entry.sends:
                    self.retransmissions += 1
                    if not entry.fast:
                        entry.timeout = min(entry.timeout * 2, self.max_timeout)
                entry.fast, entry.later_acks = False, 0
                entry.sends += 1
                entry.deadline = now + entry.timeout
                out.append((entry.packet_id, entry.opcode, entry.payload))
        while self._queue and self.next_packet_id - self._oldest() < self.window:
            opcode, payload = self._queue.popleft()
            pid = self.next_packet_id
            self.next_packet_id += 1
            self._inflight[pid] = _InFlight(pid, opcode, payload, now + self.initial_timeout,
                                            self.initial_timeout, 1)
            out.append((pid, opcode, payload))
        return out

    def next_deadline(self) -> float | None:
        if not self._inflight:
            return None
        return min(e.deadline for e in self._inflight.values())


class ReliableReceive:
    """Incoming messages: in-order delivery, duplicate suppression, ACKs to send."""

    def __init__(self, window: int = RECEIVE_WINDOW):
        self.window = window
        self.next_packet_id = 0
        self._buffer: dict[int, tuple[int, bytes]] = {}
        self._acks: list[int] = []
        self._history: list[int] = []      # most recently ACKed first
        self.duplicates = 0
        self.out_of_window = 0

    def receive(self, packet_id: int, opcode: int, payload: bytes) -> None:
        if packet_id < self.next_packet_id or packet_id in self._buffer:
            self.duplicates += 1
            self._queue_ack(packet_id)   # our earlier ACK may have been lost
            return
        if packet_id >= self.next_packet_id + self.window:
            self.out_of_window += 1      # no room: no ACK, the peer will resend
            return
        self._buffer[packet_id] = (opcode, payload)
        self._queue_ack(packet_id)

    def _queue_ack(self, packet_id: int) -> None:
        if packet_id not in self._acks:
            self._acks.append(packet_id)

    def ready(self) -> list[tuple[int, int, bytes]]:
        """Messages now deliverable in order: (packet_id, opcode, payload)."""
        out = []
        while self.next_packet_id in self._buffer:
            opcode, payload = self._buffer.pop(self.next_packet_id)
            out.append((self.next_packet_id, opcode, payload))
            self.next_packet_id += 1
        return out

    @property
    def has_acks(self) -> bool:
        return bool(self._acks)

    def take_acks(self, limit: int, *, history: bool = False) -> list[int]:
        """ACKs to put in one packet: the pending ones first; with ``history``, free
        slots are filled with recently sent ACKs again (OpenVPN 2.6's ``lru_acks``).

        The resent ACKs matter with a 2.6 server: it keeps no state after its
        stateless HARD_RESET_SERVER_V2 until a packet ACKs it, so if the packet
        carrying that ACK is lost, the retransmitted ones must carry it again.
        """
        taken, self._acks = self._acks[:limit], self._acks[limit:]
        for pid in taken:
            if pid in self._history:
                self._history.remove(pid)
            self._history.insert(0, pid)
        del self._history[ACK_HISTORY:]
        if history:
            for pid in self._history:
                if len(taken) >= limit:
                    break
                if pid not in taken:
                    taken.append(pid)
        return taken
