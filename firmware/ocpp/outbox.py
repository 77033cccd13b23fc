# Messages waiting to go to the CSMS, in order.
# Transaction-related entries (StartTransaction, StopTransaction, transaction
# MeterValues) stay until the CSMS has answered them, across reconnects; the
# rest (StatusNotification, clock-aligned values outside a transaction) is
# dropped when the link goes, because the current state is re-sent on reconnect.
# Bounded: when full, periodic MeterValues are thinned first; a Start or Stop
# is never dropped.
from micropython import const
import log

_LIMIT = const(64)


class Entry:
    def __init__(self, action, payload, tx):
        self.action = action
        self.payload = payload
        self.tx = tx  # the Transaction this message belongs to, or None
        self.attempts = 0


class Outbox:
    def __init__(self, limit=_LIMIT):
        self.entries = []
        self.limit = limit

    def __len__(self):
        return len(self.entries)

    def put(self, action, payload, tx=None):
        if len(self.entries) >= self.limit and not self._make_room():
            log.warn("outbox", "queue full, %s dropped" % action)
            return False
        self.entries.append(Entry(action, payload, tx))
        return True

    def _make_room(self):
        # Drop the oldest volatile entry, else the oldest periodic MeterValues.
        for pick in (lambda e: e.tx is None, lambda e: e.action == "MeterValues"):
            for i, e in enumerate(self.entries):
                if pick(e):
                    log.warn("outbox", "queue full, an older %s dropped" % e.action)
                    self.entries.pop(i)
                    return True
        return False

    def peek(self):
        return self.entries[0] if self.entries else None

    def pop(self):
        return self.entries.pop(0)

    def drop_volatile(self):
        # The link is gone: keep only what must survive (transaction messages).
        self.entries = [e for e in self.entries if e.tx is not None]
