# Reservations (OCPP 1.6 §3.11, §5.13): which idTag holds which connector until
# when. Kept in flash (storage.Store) so they survive a reboot, and ended
# exactly at their expiry by one timer task that sleeps until the next one.
# At most one reservation per connector plus, with ReserveConnectorZeroSupported,
# as many "any connector" ones (connector 0) as there are connectors free:
# the station model enforces that, so the list stays bounded.
import asyncio
import time
import clock
import log

_TAG = "reservation"
_MAX_SLEEP_MS = 60000  # re-check at least this often (the clock may be set meanwhile)


class Reservation:
    def __init__(self, rid, connector_id, expiry, id_tag, parent_id_tag=None):
        self.id = rid
        self.connector_id = connector_id  # 0: any connector
        self.expiry = expiry  # Unix seconds
        self.id_tag = id_tag
        self.parent_id_tag = parent_id_tag

    def held_by(self, id_tag, parent_id_tag=None):
        # §5.13: the incoming idTag or its parent matches the reservation's
        # idTag or parent (case-insensitive, like every IdToken).
        for a in (id_tag, parent_id_tag):
            for b in (self.id_tag, self.parent_id_tag):
                if a and b and a.upper() == b.upper():
                    return True
        return False

    def describe(self):
        return "reservation %d for %s on %s until %s" % (
            self.id, self.id_tag, "any connector" if self.connector_id == 0 else "connector %d" % self.connector_id,
            clock.iso(self.expiry))


class Reservations:
    def __init__(self, store):
        self._store = store
        self._r = []
        self._wake = asyncio.Event()
        for x in store.load("reservations", []) or ():
            if isinstance(x, list) and len(x) == 5 and isinstance(x[1], int) and isinstance(x[2], int):
                self._r.append(Reservation(*x))
            else:
                log.warn(_TAG, "ignored a damaged stored reservation")

    def __iter__(self):
        return iter(self._r)

    def __len__(self):
        return len(self._r)

    def zero(self, ignore=None):
        # how many "any connector" reservations there are (ignore: leave one out)
        n = 0
        for r in self._r:
            if r.connector_id == 0 and r is not ignore:
                n += 1
        return n

    def get(self, rid):
        for r in self._r:
            if r.id == rid:
                return r
        return None

    def add(self, r):
        # A reservation with the same id is replaced (§5.13).
        self._r = [x for x in self._r if x.id != r.id]
        self._r.append(r)
        self._changed()
        log.info(_TAG, "%s accepted" % r.describe())

    def remove(self, r, why):
        if r in self._r:
            self._r.remove(r)
            self._changed()
            log.info(_TAG, "reservation %d ended: %s" % (r.id, why))

    def _changed(self):
        self._wake.set()
        try:
            self._store.save("reservations", [[r.id, r.connector_id, r.expiry, r.id_tag, r.parent_id_tag]
                                              for r in self._r])
        except OSError:
            pass  # logged by the store; the reservation holds until a reboot

    def _ms_until(self, t):
        # Milliseconds from now to Unix second t; sub-second where the port can
        # tell. Read in this order a second boundary can only make it short:
        # run() checks again before ending anything.
        try:
            ms = 1000 - time.time_ns() // 1000000 % 1000  # left of the current second
        except AttributeError:
            ms = 1000
        return (t - clock.now() - 1) * 1000 + ms

    async def run(self, expired):
        # Calls expired(reservation) when its expiryDate is reached, not before.
        while True:
            now = clock.now()
            nxt = None
            for r in list(self._r):
                if r.expiry <= now:
                    expired(r)
                elif nxt is None or r.expiry < nxt:
                    nxt = r.expiry
            self._wake.clear()
            wait = _MAX_SLEEP_MS if nxt is None else min(_MAX_SLEEP_MS, max(self._ms_until(nxt), 1))
            try:
                await asyncio.wait_for_ms(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
