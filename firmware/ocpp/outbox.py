# Messages waiting to go to the CSMS, in order.
#
# Transaction-related messages (StartTransaction, StopTransaction, transaction
# MeterValues) are journaled to flash before they are sent and removed only
# when the CSMS has answered (OCPP 1.6 §3.x "transaction-related messages"),
# so they survive reconnects, reboots and power cuts. So do the other
# messages put with local=KEPT (0): SecurityEventNotification (whitepaper
# A04.FR.02), at most _KEPT_MAX of them, the oldest dropped beyond that; they
# do not count against the transaction budget and are never thinned out. The
# rest (StatusNotification, MeterValues outside a transaction) lives in RAM and
# is dropped with the link: the current state is sent again on reconnect.
#
# The journal is one append-only file of lines "<json> <crc32 hex>\n":
#   ["P", seq, action, local, payload]   a queued message (local: our transaction
#                                        number, from 1; 0 = KEPT, no transaction)
#   ["D", seq]                           answered, given up or thinned out
#   ["T", local, transactionId]          the CSMS's id for our transaction
# A torn last line (power lost mid-write) fails its CRC and is discarded with
# whatever follows it. The file is rewritten compactly when it grows. The
# record is written by json.dump straight into the file, so its text is never
# whole in RAM, and the CRC read back from the file; lines of the earlier
# layout "<crc32 hex> <json>\n" are still read.
# RAM holds only the index (seq, file offset, kind, local) of journaled
# entries; payloads are read back from flash when their turn comes.
# A KEPT record is a "P" line like the others: a journal of earlier firmware
# reads the same, and earlier firmware (a rolled-back update) that finds one
# drops it as a message of a transaction the CSMS never numbered.
#
# Every message belongs to the OCPP version it was made for (`proto`: 1 for
# 1.6, 2 for 2.0.1; a 2.0.1 "P" line has a sixth element, 2) and only a session
# of that version sees it: a StartTransaction is never replayed to a 2.0.1 CSMS,
# nor a TransactionEvent to a 1.6 one; they wait in flash for a session of their
# own version. KEPT messages (SecurityEventNotification: the same schema in
# both versions) are seen by either. For 2.0.1 the "T" record holds the last
# seqNo given to a transaction's TransactionEvents instead of the CSMS's id:
# ["T", local, seqNo, 2], kept apart (seqnos), so that neither version ever takes
# the other's number for its own (a 1.6 StopTransaction with a seqNo for its id).
import json
import os
import binascii
from micropython import const
import log
import security

_RAM_LIMIT = const(32)  # volatile messages kept while online
_START = const(0)
_STOP = const(1)
_SAMPLE = const(2)  # periodic transaction MeterValues: may be thinned out
_METER = const(3)  # other transaction MeterValues
_EVENT = const(4)  # a KEPT message
KEPT = const(0)  # put(..., local=KEPT): journaled, no transaction's
_KEPT_MAX = const(50)  # KEPT messages in flash (each at most ~400 B: a SecurityEventNotification)
# An emptied journal is rewritten once it holds this much: not after every
# answered message (a file rewrite each time), and a short replay at boot.
_COMPACT_EMPTY = const(8192)


class Entry:
    # The message at the head of the queue, ready to send.
    def __init__(self, seq, action, payload, local):
        self.seq = seq
        self.action = action
        self.payload = payload
        self.local = local  # our transaction number, KEPT, or None for volatile messages
        self.attempts = 0  # sends the CSMS failed to process
        self.retry_at = None  # ticks_ms before which it is not sent again


class Outbox:
    def __init__(self, root, budget=65536):
        self.path = (root + "/" if root else "") + "txq.log"
        self.budget = budget  # flash bytes the live journaled messages may take
        self.ids = {}  # local -> CSMS transactionId (OCPP 1.6)
        self.seqnos = {}  # local -> the last seqNo given (OCPP 2.0.1)
        self.keep = set()  # locals of running transactions (their ids must survive)
        self.volatile = []  # [seq, action, payload]
        self._seqs = []  # journaled entries, in order: seq, offset, size, kind, local
        self._offs = []
        self._sizes = []
        self._kinds = bytearray()
        self._protos = bytearray()  # the version each journaled entry is for; 0: either (KEPT)
        self._proto = 1  # the version of the session (the ChargePoint sets .proto): 1 OCPP 1.6, 2 OCPP 2.0.1
        self._locals = []
        self._next = 1
        self._head = None  # cached Entry for the first message
        self._fresh = None  # the Entry put() journaled as the first one this session sees, until it is sent
        self._file_size = 0
        self.bytes_written = 0
        self._load()

    # ---- what the charge point sees -----------------------------------------
    def __len__(self):
        return len(self._seqs) + len(self.volatile)

    def pending_tx(self):
        # journaled messages this session's version can deliver
        n = 0
        for i in range(len(self._seqs)):
            if self._mine(i):
                n += 1
        return n

    @property
    def proto(self):
        return self._proto

    @proto.setter
    def proto(self, p):
        # A ChargePoint of another version takes over: what it cannot send is out of sight.
        self._proto = p
        self._head = self._fresh = None
        self.volatile = []

    def _mine(self, i):
        p = self._protos[i]
        return p == 0 or p == self._proto

    def _first(self):
        # -> index of the first journaled entry of this session's version, or -1
        for i in range(len(self._seqs)):
            if self._mine(i):
                return i
        return -1

    def put(self, action, payload, local=None, periodic=False):
        # Queue a message; with `local` it is journaled: transaction-related
        # (our transaction number), or KEPT.
        seq = self._next
        self._next += 1
        if local is None:
            if len(self.volatile) >= _RAM_LIMIT:
                log.warn("outbox", "too many messages waiting, an older %s dropped" % self.volatile[0][1])
                self.volatile.pop(0)
            self.volatile.append([seq, action, payload])
            return True
        kind = _kind(action, local, periodic, payload)
        proto = 0 if kind == _EVENT else self._proto
        if kind == _EVENT:
            self._bound()
        rec = ["P", seq, action, local, payload]
        if proto > 1:
            rec.append(2)
        off, size = self._append(rec)
        if off is None:
            return False
        if self._first() < 0:  # it is the next to go: peek() need not read it back from flash
            self._fresh = Entry(seq, action, payload, local)
        self._seqs.append(seq)
        self._offs.append(off)
        self._sizes.append(size)
        self._kinds.append(kind)
        self._protos.append(proto)
        self._locals.append(local)
        self._thin()
        return True

    def peek(self):
        # -> the next Entry to send, or None.
        if self._head is not None:
            return self._head
        first = self._first()
        js = self._seqs[first] if first >= 0 else None
        vs = self.volatile[0][0] if self.volatile else None
        if js is None and vs is None:
            return None
        if js is None or (vs is not None and vs < js):
            v = self.volatile[0]
            self._head = Entry(v[0], v[1], v[2], None)
        elif self._fresh is not None and self._fresh.seq == js:
            self._head = self._fresh
        else:
            rec = self._read(self._offs[first], self._sizes[first])
            if rec is None:  # unreadable on flash: skip it rather than stall
                log.error("outbox", "a queued message could not be read back from flash, skipped")
                self._drop(first)
                return self.peek()
            self._head = Entry(rec[1], rec[2], rec[4], rec[3])
        return self._head

    def peek_volatile(self):
        # -> the oldest message that is not transaction-related, or None: it
        # may go while a transaction message waits for its retry.
        if not self.volatile:
            return None
        v = self.volatile[0]
        return Entry(v[0], v[1], v[2], None)

    def pop(self, e):
        # Entry e was answered (or given up): remove it for good.
        if self._head is not None and self._head.seq == e.seq:
            self._head = None
        if e.local is None:
            for i, v in enumerate(self.volatile):
                if v[0] == e.seq:
                    self.volatile.pop(i)
                    return
        elif e.seq in self._seqs:
            self._drop(self._seqs.index(e.seq))

    def set_id(self, local, tx_id):
        if self._proto > 1:
            self.seqnos[local] = tx_id
            self._append(["T", local, tx_id, 2])
            return
        self.ids[local] = tx_id
        self._append(["T", local, tx_id])

    def tx_id(self, local):
        # this session's version's number for the transaction: 1.6 its CSMS id, 2.0.1 its last seqNo
        return (self.seqnos if self._proto > 1 else self.ids).get(local)

    def has(self, action, local):
        # Is a message of this transaction still queued? (Start or Stop; for
        # 2.0.1 its TransactionEvent Started or Ended)
        kind = _START if action == "StartTransaction" else _STOP
        for i in range(len(self._seqs)):
            if self._locals[i] == local and self._kinds[i] == kind:
                return True
        return False

    def queued(self, local):
        # Is any message of this transaction still queued? (2.0.1 GetTransactionStatus)
        return local in self._locals

    def drop_volatile(self):
        # The link is gone: what is not transaction-related is not kept.
        if self._head is not None and self._head.local is None:
            self._head = None
        self.volatile = []

    # ---- journal ------------------------------------------------------------
    def _drop(self, i):
        self._append(["D", self._seqs[i]])
        seq = self._seqs[i]
        for a in (self._seqs, self._offs, self._sizes, self._locals):
            a.pop(i)
        self._kinds = self._kinds[:i] + self._kinds[i + 1:]
        self._protos = self._protos[:i] + self._protos[i + 1:]
        if self._head is not None and self._head.seq == seq:
            self._head = None
        if self._fresh is not None and self._fresh.seq == seq:
            self._fresh = None
        if not self._seqs and self._file_size > _COMPACT_EMPTY:
            self._compact()
        elif self._file_size > 2 * self.budget + 4096:
            self._compact()

    def _bound(self):
        # Room for one more KEPT message: past _KEPT_MAX the oldest goes (it
        # is still in the security log), not the one in flight.
        n = 0
        first = -1
        for i in range(len(self._seqs)):
            if self._kinds[i] == _EVENT:
                n += 1
                if first < 0 and not self._in_flight(i):
                    first = i
        if n >= _KEPT_MAX and first >= 0:
            log.warn("outbox", "%d security events waiting: the oldest dropped from the queue" % n)
            self._drop(first)

    def _in_flight(self, i):
        return self._head is not None and self._head.seq == self._seqs[i]

    def _tx_bytes(self):
        # Flash the transaction messages take (what the budget bounds).
        n = 0
        for i in range(len(self._sizes)):
            if self._kinds[i] != _EVENT:
                n += self._sizes[i]
        return n

    def _thin(self):
        # Over budget: drop periodic MeterValues, oldest first, but never the
        # first or last sample of a transaction, nor a Start or a Stop.
        while self._tx_bytes() > self.budget:
            victim = self._thinnable()
            if victim < 0:
                log.warn("outbox", "transaction queue over its flash budget, nothing left to thin out")
                security.event("MemoryExhaustion", "transaction queue over its flash budget (%d B)" % self.budget)
                return
            log.warn("outbox", "transaction queue full: an older periodic meter value dropped")
            self._drop(victim)

    def _thinnable(self):
        n = len(self._seqs)
        for i in range(n):
            if self._kinds[i] != _SAMPLE or self._in_flight(i):
                continue
            local = self._locals[i]
            before = after = False
            for j in range(n):
                if self._locals[j] == local and self._kinds[j] == _SAMPLE:
                    before = before or j < i
                    after = after or j > i
            if before and after:
                return i
        return -1

    def _append(self, rec):
        try:
            with open(self.path, "ab+") as f:  # + : the CRC is read back
                n = _write(f, rec)
        except OSError as e:
            log.exc("outbox", "cannot write the transaction queue to flash", e)
            if e.args and e.args[0] == 28:  # ENOSPC
                security.event("MemoryExhaustion", "the flash is full: a queued message was not written")
            return None, 0
        off = self._file_size
        self._file_size += n
        self.bytes_written += n
        return off, n

    def _read(self, off, size):
        try:
            with open(self.path, "rb") as f:
                f.seek(off)
                return _decode(f.read(size))
        except OSError:
            return None

    def _load(self):
        # Replay the journal; stop at the first damaged line (a torn write).
        live = {}
        order = []
        off = 0
        torn = False
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        with f:
            while True:
                line = f.readline()
                if not line:
                    break
                rec = _decode(line)
                if rec is None:
                    torn = True
                    break
                if rec[0] == "P":
                    live[rec[1]] = (off, len(line), rec[2], rec[3], rec[4], rec[5] if len(rec) > 5 else 1)
                    order.append(rec[1])
                    self._next = max(self._next, rec[1] + 1)
                elif rec[0] == "D":
                    live.pop(rec[1], None)
                elif rec[0] == "T":
                    (self.seqnos if len(rec) > 3 else self.ids)[rec[1]] = rec[2]
                off += len(line)
        self._file_size = off
        for seq in order:
            if seq in live:
                o, size, action, local, payload, proto = live[seq]
                self._seqs.append(seq)
                self._offs.append(o)
                self._sizes.append(size)
                kind = _kind(action, local, _periodic(payload), payload)
                self._kinds.append(kind)
                self._protos.append(0 if kind == _EVENT else proto)
                self._locals.append(local)
        if torn:
            log.warn("outbox", "the transaction queue ended in a torn write (power cut); earlier messages kept")
        if self._seqs:
            log.info("outbox", "%d queued message(s) from before the restart still to deliver" % len(self._seqs))
        if torn or not self._seqs:
            self._compact(True)

    def _compact(self, every_id=False):
        # Rewrite the journal with only what is still needed, atomically. At
        # boot (every_id) no transaction is in `keep` yet: every "T" record is
        # kept, for the transactions the power cut interrupted (2.0.1: the
        # last seqNo given; recover() ends them with the next one).
        records = []
        needed = set(self.ids) | set(self.seqnos) if every_id else set(self._locals) | self.keep
        for local in needed:
            if local in self.ids:
                records.append(["T", local, self.ids[local]])
            if local in self.seqnos:
                records.append(["T", local, self.seqnos[local], 2])
        for k in list(self.seqnos):
            if k not in needed:
                del self.seqnos[k]
        for k in list(self.ids):
            if k not in needed:
                del self.ids[k]
        entries = []
        for i in range(len(self._seqs)):
            rec = self._read(self._offs[i], self._sizes[i])
            if rec is not None:
                entries.append(rec)
        tmp = self.path + ".tmp"
        offs, sizes = [], []
        try:
            with open(tmp, "wb+") as f:
                pos = 0
                for rec in records + entries:
                    n = _write(f, rec)
                    if rec[0] == "P":
                        offs.append(pos)
                        sizes.append(n)
                    pos += n
                    self.bytes_written += n
            os.rename(tmp, self.path)
        except OSError as e:
            log.exc("outbox", "cannot compact the transaction queue", e)
            return
        self._file_size = pos
        self._seqs = [rec[1] for rec in entries]
        self._offs = offs
        self._sizes = sizes
        self._locals = [rec[3] for rec in entries]
        self._kinds = bytearray(_kind(r[2], r[3], _periodic(r[4]), r[4]) for r in entries)
        self._protos = bytearray(0 if k == _EVENT else r[5] if len(r) > 5 else 1 for k, r in zip(self._kinds, entries))
        self._head = self._fresh = None


def _kind(action, local, periodic, payload=None):
    # (no dict of action names: each one costs RAM at boot)
    if local == KEPT:
        return _EVENT
    if action == "StartTransaction":
        return _START
    if action == "TransactionEvent":  # 2.0.1: its Started and Ended count as Start and Stop (has())
        e = payload.get("eventType") if type(payload) is dict else None
        if e == "Started":
            return _START
        if e == "Ended":
            return _STOP
    return _STOP if action == "StopTransaction" else _SAMPLE if periodic else _METER


def _periodic(payload):
    try:
        return payload["meterValue"][0]["sampledValue"][0].get("context") == "Sample.Periodic"
    except (KeyError, IndexError, TypeError):
        return False


_crc_buf = bytearray(64)  # the CRC's read-back window


def _write(f, rec):
    # One journal line for rec at the end of f (opened for reading and
    # writing): the JSON streamed into the file, then the CRC32 of what was
    # written. -> the line's length in bytes.
    start = f.seek(0, 2)
    json.dump(rec, f)
    end = f.tell()
    f.seek(start)
    crc = 0
    mv = memoryview(_crc_buf)
    left = end - start
    while left:
        n = f.readinto(mv if left >= 64 else mv[:left])
        if not n:
            raise OSError("journal read-back ended early")
        crc = binascii.crc32(mv[:n] if n < 64 else mv, crc)
        left -= n
    f.write(b" %08x\n" % (crc & 0xFFFFFFFF))  # the file is in append mode: this goes at the end
    return end - start + 10


def _decode(line):
    # -> the record of a journal line, or None when it is torn or corrupt.
    if len(line) < 11 or line[-1] != 10:
        return None
    mv = memoryview(line)  # parsed where it lies, not copied
    if line[0] == 91:  # "[": <json> <crc>
        if line[-10] != 32:
            return None
        body, crc = mv[:-10], line[-9:-1]
    elif line[8] == 32:  # the earlier layout, <crc> <json>
        body, crc = mv[9:-1], line[:8]
    else:
        return None
    try:
        if int(crc, 16) != binascii.crc32(body) & 0xFFFFFFFF:
            return None
        rec = json.loads(body)
    except (ValueError, UnicodeError):
        return None
    return rec if type(rec) is list and rec else None
