# The station model: connectors, their status, transactions and meter readings.
# It knows nothing of OCPP frames or of hardware details: hardware sits behind
# small port objects (meter.read(), contactor.close()/open()), and the protocol
# layer is an observer told about status changes and transactions.
import asyncio
import time
import os
import binascii
from micropython import const
import clock
import log
import auth
from reservations import Reservations, Reservation

# Connector states (OCPP 1.6 §7.7; the same names serve OCPP 2.0.1's model)
AVAILABLE = "Available"
PREPARING = "Preparing"
CHARGING = "Charging"
SUSPENDED_EV = "SuspendedEV"
SUSPENDED_EVSE = "SuspendedEVSE"
FINISHING = "Finishing"
RESERVED = "Reserved"
UNAVAILABLE = "Unavailable"
FAULTED = "Faulted"

NO_ERROR = "NoError"
ENERGY = "Energy.Active.Import.Register"
METER_FAILURE = "PowerMeterFailure"
SWITCH_FAILURE = "PowerSwitchFailure"
PILOT_FAILURE = "EVCommunicationError"
OFFERED = "Current.Offered"
_PILOT_POLL_MS = const(50)


MEASURAND_KEYS = ("MeterValuesSampledData", "MeterValuesAlignedData", "StopTxnSampledData", "StopTxnAlignedData")
# A phase qualifier ("Voltage.L2-N", "Current.Import.L1") -> index in a per-phase reading
PHASE_INDEX = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}


def split_phase(m):
    # "Voltage.L2-N" -> ("Voltage", 1); "Energy.Active.Import.Register" -> (itself, None)
    k = m.rfind(".")
    i = PHASE_INDEX.get(m[k + 1:]) if k > 0 else None
    return (m, None) if i is None else (m[:k], i)


class Transaction:
    # One charging session on one connector.
    def __init__(self, connector_id, id_tag, meter_start, start_time, reservation_id=None):
        self.connector_id = connector_id
        self.id_tag = id_tag
        self.meter_start = meter_start
        self.start_time = start_time
        self.reservation_id = reservation_id
        self.id = None  # transactionId from the CSMS, once StartTransaction is answered
        self.local_id = None  # our own number, valid before the CSMS answers and across restarts
        self.uid = None  # our own id, unique across restarts and data wipes (OCPP 2.0.1's transactionId)
        self.parent_id_tag = None  # the idTag's group (§3.10): another card of it may end the transaction
        self.energy_cap = None  # Wh register value at which an invalidated idTag's charge ends
        self.cap_reason = None  # the stop reason then
        self.meter_stop = None
        self.stop_time = None
        self.stop_reason = None
        self.stop_id_tag = None
        self.stop_data = None  # readings at the stop, for StopTxnSampledData
        self.samples = []  # (time, context, measurands, values) for StopTransaction's transactionData
        self.sample_stride = 1  # keep every n-th sample: doubled each time the list is thinned
        self.sample_count = 0
        self.drawn = False  # the vehicle has drawn current during this transaction
        self.power_cut = False  # the power stays off for the rest of it (a refused idTag)


class Connector:
    def __init__(self, cid, meter=None, contactor=None):
        self.id = cid
        self.meter = meter
        self.contactor = contactor
        self.status = AVAILABLE
        self.error_code = NO_ERROR
        self.info = None
        self.plugged = False
        self.operative = True
        self.fault = None  # error code while faulted
        self.warning = None  # error code reported without faulting (e.g. safe mode)
        self.transaction = None
        self.authorized = None  # idTag authorized before the plug went in
        self.auth_deadline = 0  # ticks_ms: the authorization lapses (ConnectionTimeOut)
        self.finishing = False  # transaction ended, vehicle still plugged
        self.reading = None  # last good meter reading {measurand: value}
        self.reading_time = 0  # Unix time of that reading
        self.reservation = None  # reservations.Reservation holding this connector
        self.intent = None  # (idTag, parentIdTag, reservation it uses up, TxProfile) of the start under way
        self.scheduled = None  # availability to take when the transaction ends (True: operative)
        self.lock = None  # cable lock port, None when there is none
        self.held_for = None  # (idTag, parentIdTag) whose card unlocks the cable left locked (§4.10)
        self.plug_input = None  # plug detection pin; None: console (simulator) or current
        self.detect_by_current = False  # no plug signal: a drawing vehicle counts as plugged in
        self.pilot = None  # control pilot port (or the simulated vehicle's), None when there is none
        self.pilot_state = None  # the pilot's last state "A".."F", None without pilot sensing
        self.rating = 32.0  # A per phase (board file "rating_a")
        self.phases = 3
        self.min_current = 6.0  # A: below this no charging at all (IEC 61851-1)
        self.limit = None  # A the connector may draw now (smart charging), None: not worked out yet
        self.meter_ok = True  # the last poll answered
        self.meter_failures = 0  # consecutive failed polls
        self.threshold_ma = 500
        self.draw_since = None  # ticks_ms when the current went above / below the threshold
        self.idle_since = None

    def energy(self):
        # Energy register in Wh, or None while the meter has not answered.
        r = self.reading
        return None if r is None else round(r.get(ENERGY, 0))  # nearest Wh: float32 kWh is often a hair low

    def drawing(self):
        # The vehicle draws more than ChargingCurrentThreshold on any phase.
        r = self.reading
        if r is None or not self.meter_ok:
            return False
        amps = r.get("Current.Import", 0)
        if type(amps) is tuple:
            amps = max(amps)
        return amps * 1000 > self.threshold_ma

    def derive_status(self):
        # The OCPP 1.6 connector state machine, from the connector's facts.
        if self.fault:
            return FAULTED
        if self.transaction:
            if not self.plugged and not self.detect_by_current or self.pilot_state == "B":
                return SUSPENDED_EV  # the vehicle left (the session goes on, §4.9) or does not ask (pilot B)
            if not self.contactor or not self.contactor.closed:
                return SUSPENDED_EVSE
            return CHARGING if self.drawing() else SUSPENDED_EV
        if not self.operative:
            return UNAVAILABLE
        if self.finishing:
            return FINISHING
        if self.authorized or (self.plugged and not self.reservation):
            return PREPARING  # a reserved connector stays Reserved until its holder comes (G2)
        if self.reservation:
            return RESERVED
        return AVAILABLE


class Station:
    # observer: an object with status_changed(connector), transaction_started(tx),
    # transaction_stopped(tx), and an async authorize(id_tag) -> idTagInfo dict;
    # optionally (a protocol that reports them, see _tell): vehicle(connector,
    # plugged), authorized(connector, id_tag) when an idTag waits for a vehicle,
    # and authorization_lapsed(connector) when none came in time.
    def __init__(self, config, connectors, store=None):
        self.config = config
        self.connectors = connectors  # index 0 stands for the whole station
        self.observer = None
        # Running transactions are kept in flash so that one interrupted by a
        # power cut can be ended properly after the restart.
        self.store = store
        state = store.load("transactions", {}) if store else {}
        self._next_local = state.get("next", 1)
        self.interrupted = list(state.get("active", {}).values())  # from before the restart
        # The local list and cache, reservations and the availability the CSMS
        # set are kept in flash too (OCPP 1.6 §3.5, §5.13, §5.2).
        self.auth = auth.Authorizer(store, config)
        self.reservations = Reservations(store)
        # Smart charging's profiles (charging.py), loaded only when the flash
        # holds some or the CSMS sends one: without, a connector's limit is its rating.
        self._charging = None
        if store and store.load("profiles", []):
            self.profiles()
        self.limits_changed = asyncio.Event()  # a profile, transaction or clock change: work the limits out again
        connectors[0].rating = sum(c.rating for c in connectors[1:])
        self._pooling = False
        for r in self.reservations:
            c = self.connector(r.connector_id)
            if c:
                c.reservation = r
        for cid in store.load("availability", []) or ():
            if isinstance(cid, int) and 0 <= cid < len(connectors):
                connectors[cid].operative = False
        self.refresh_all()

    def measurable(self, key, measurands):
        # A measurand list can be configured when every connector's meter
        # delivers each measurand (and phase) in it (errata 3.14.4: Rejected
        # otherwise). A meter that does not say what it measures is trusted.
        for m in measurands:
            base, i = split_phase(m)
            if m == OFFERED:  # the limit offered: the station's own figure
                continue
            for c in self.connectors[1:]:
                have = getattr(c.meter, "measurands", None)
                if have is None:
                    continue
                n = have.get(base)
                if n is None or i is not None and (i >= n or base != "Voltage" and m.endswith("-N")):
                    log.warn("station", "%s refused: the meter of connector %d does not measure %s" % (key, c.id, m))
                    return False
        return True

    def check_config(self, key, value):
        # config.check hook
        return self.measurable(key, value) if key in MEASURAND_KEYS else True

    def save_transactions(self):
        # Written when a transaction starts, gets its CSMS id, or stops.
        if self.store is None:
            return
        active = {}
        for c in self.connectors:
            tx = c.transaction
            if tx:
                active[str(c.id)] = {"local": tx.local_id, "connector": c.id, "idTag": tx.id_tag,
                                     "meterStart": tx.meter_start, "start": tx.start_time,
                                     "reservationId": tx.reservation_id, "id": tx.id, "uid": tx.uid}
        try:
            self.store.save("transactions", {"next": self._next_local, "active": active})
        except OSError as e:
            log.exc("station", "cannot store the running transactions", e)

    def _tell(self, event, *args):
        # An optional observer event: only a protocol that reports it has the method.
        fn = getattr(self.observer, event, None)
        if fn:
            fn(*args)

    def connector(self, cid):
        if 0 < cid < len(self.connectors):
            return self.connectors[cid]
        return None

    # ---- status ---------------------------------------------------------
    def refresh(self, c):
        if c.id == 0:  # the station as a whole
            status = FAULTED if c.fault else (AVAILABLE if c.operative else UNAVAILABLE)
        else:
            status = c.derive_status()
            if status in (AVAILABLE, PREPARING) and self._held(c):
                status = RESERVED  # kept free for a reservation on connector 0
        if status in (FAULTED, UNAVAILABLE) and (c.reservation or c.id == 0 and len(self.reservations)):
            self._release(c)
        error = c.fault or c.warning or NO_ERROR
        if status != c.status or error != c.error_code:
            log.info("station", "connector %d: %s -> %s%s" % (
                c.id, c.status, status, "" if error == NO_ERROR else " (%s)" % error))
            c.status = status
            c.error_code = error
            if self.observer:
                self.observer.status_changed(c)
        if c.id and not self._pooling and self.reservations.zero():
            # Reservations on connector 0 hold the last free connectors: one
            # connector's change may turn the others Reserved or free.
            self._pooling = True
            try:
                for o in self.connectors[1:]:
                    if o is not c:
                        self.refresh(o)
            finally:
                self._pooling = False

    def refresh_all(self):
        for c in self.connectors:
            self.refresh(c)

    # ---- vehicle and user events -----------------------------------------
    def plug(self, cid):
        c = self.connector(cid)
        if c is None or c.plugged:
            return
        c.plugged = True
        log.info("station", "connector %d: vehicle plugged in" % cid)
        self._tell("vehicle", c, True)
        tx = c.transaction
        if c.authorized and not tx:
            self.start_transaction(c, c.authorized)
        elif tx:
            # the session went on without the vehicle (StopTransactionOnEVSideDisconnect
            # false): energy flows again (§4.10)
            c.info = None
            self._switch(c)
        self.refresh(c)

    def unplug(self, cid):
        c = self.connector(cid)
        if c is None or not c.plugged:
            return
        c.plugged = False
        c.finishing = False
        log.info("station", "connector %d: vehicle unplugged" % cid)
        self._tell("vehicle", c, False)
        if c.transaction and not self.config.get("StopTransactionOnEVSideDisconnect"):
            # §4.9: the session goes on (SuspendedEV, "EV side disconnected"),
            # the cable stays locked; no power on an empty socket
            log.info("station", "connector %d: the transaction goes on without the vehicle "
                     "(StopTransactionOnEVSideDisconnect is false)" % cid)
            c.info = "EV side disconnected"
            if c.contactor:
                c.contactor.open()
        elif c.transaction:
            # §4.10: the cable is released too when UnlockConnectorOnEVSideDisconnect
            # says so, else it stays locked until the user's card is presented.
            tx = c.transaction
            release = self.config.get("UnlockConnectorOnEVSideDisconnect")
            self.stop_transaction(c, "EVDisconnected", unlock=release)
            c.finishing = False
            if not release and c.lock:
                c.held_for = (tx.id_tag, tx.parent_id_tag)
                log.info("station", "connector %d: the cable stays locked until %s presents the card again" % (
                    cid, tx.id_tag))
        self.refresh(c)

    async def present_card(self, cid, id_tag):
        # A card at connector cid: ends the running transaction if it is the
        # same card or one of its group (§3.10), otherwise authorizes it and
        # starts charging once a vehicle is plugged in.
        c = self.connector(cid)
        if c is None:
            log.warn("station", "card %s at unknown connector %d" % (id_tag, cid))
            return
        tx = c.transaction
        if c.held_for and not tx and await self._releases(c, id_tag):
            return
        if tx:
            if auth.same(tx.id_tag, id_tag):
                log.info("station", "connector %d: card %s ends the session" % (cid, id_tag))
                self.stop_transaction(c, "Local", id_tag)
                return
            # Another card is authorized on its own (§4.1); one of the same group may end it.
            info = await self.observer.authorize(id_tag)
            if c.transaction is tx and info.get("status") in auth.VALID and auth.same(
                    info.get("parentIdTag"), tx.parent_id_tag):
                log.info("station", "connector %d: card %s of the same group ends the session" % (cid, id_tag))
                self.stop_transaction(c, "Local", id_tag)
            else:
                log.info("station", "connector %d: card %s does not own this session" % (cid, id_tag))
            return
        if not c.operative or c.fault:
            log.info("station", "connector %d is %s: card %s ignored" % (cid, c.status, id_tag))
            return
        log.info("station", "connector %d: card %s presented, authorizing" % (cid, id_tag))
        info = await self.observer.authorize(id_tag)
        status = info.get("status")
        if status != "Accepted":
            log.info("station", "card %s refused: %s" % (id_tag, status))
            return
        parent = info.get("parentIdTag")
        ok, claim = self._claim(c, id_tag, parent)
        if not ok:
            log.info("station", "connector %d is reserved for another card: %s refused" % (cid, id_tag))
            return
        log.info("station", "card %s accepted" % id_tag)
        self.begin(c, id_tag, parent, claim)

    async def _releases(self, c, id_tag):
        # The card of the session whose cable was left locked (or one of its
        # group) unlocks it. -> True when it did
        tag, parent = c.held_for
        ok = auth.same(tag, id_tag)
        if not ok and parent:
            info = await self.observer.authorize(id_tag)
            ok = info.get("status") in auth.VALID and auth.same(info.get("parentIdTag"), parent)
        if not ok:
            return False
        c.held_for = None
        log.info("station", "connector %d: card %s unlocks the cable" % (c.id, id_tag))
        c.lock.unlock()
        return True

    def begin(self, c, id_tag, parent=None, claim=None, profile=None):
        # An authorized idTag: charge now if a vehicle is plugged in, otherwise
        # wait ConnectionTimeOut seconds for one.
        if c.transaction or not c.operative or c.fault:
            return
        c.intent = (id_tag, parent, claim, profile)
        if c.plugged or c.detect_by_current:
            self.start_transaction(c, id_tag)
        else:
            c.authorized = id_tag
            c.auth_deadline = time.ticks_add(time.ticks_ms(), self.config.get("ConnectionTimeOut") * 1000)
            self._tell("authorized", c, id_tag)
        self.refresh(c)

    def remote_connector(self, cid, id_tag):
        # The connector a remote start (§5.11) may use, or None: the one asked
        # for, else one reserved for this idTag, else one with a vehicle
        # waiting, else any idle one. It must be operative, idle and not held
        # for another card.
        i = self.auth.lookup(id_tag)[0]
        parent = i.get("parentIdTag") if i else None
        if cid is not None:  # 0 is no connector here (§6.33: connectorId > 0)
            cands = [self.connector(cid)]
        else:
            cands = sorted(self.connectors[1:], key=lambda c: (
                not (c.reservation and c.reservation.held_by(id_tag, parent)), not c.plugged))
        c0 = self.connectors[0]
        for c in cands:
            if c and c0.operative and not c0.fault and c.operative and not c.fault and not c.transaction \
                    and not c.authorized and self._claim(c, id_tag, parent)[0]:
                return c
        return None

    async def remote_start(self, c, id_tag, authorize_first, profile=None):
        # RemoteStartTransaction (OCPP 1.6 §5.11): optionally authorize first.
        log.info("station", "connector %d: remote start for %s" % (c.id, id_tag))
        if authorize_first:
            info = await self.observer.authorize(id_tag)
            if info.get("status") != "Accepted":
                log.info("station", "remote start refused, %s is %s" % (id_tag, info.get("status")))
                return
        else:
            info = self.auth.lookup(id_tag)[0] or {}
        ok, claim = self._claim(c, id_tag, info.get("parentIdTag"))
        if not ok:
            log.info("station", "connector %d is reserved for another card: remote start for %s dropped" % (
                c.id, id_tag))
            return
        self.begin(c, id_tag, info.get("parentIdTag"), claim, profile)

    # ---- transactions ---------------------------------------------------
    def start_transaction(self, c, id_tag, reservation_id=None):
        meter_start = c.energy()
        if meter_start is None:
            meter_start = 0
            log.warn("station", "connector %d: no meter reading yet, meterStart 0" % c.id)
        tx = Transaction(c.id, id_tag, meter_start, clock.now(), reservation_id)
        tx.local_id = self._next_local
        self._next_local += 1
        tx.uid = "%s-%d" % (binascii.hexlify(os.urandom(4)).decode(), tx.local_id)
        c.transaction = tx
        c.authorized = None
        c.finishing = False
        it = c.intent  # what the authorization of this idTag brought along
        c.intent = None
        if it and auth.same(it[0], id_tag):
            tx.parent_id_tag = it[1]
            r = it[2]  # the reservation this transaction uses up (§5.13)
            if r is not None and self.reservations.get(r.id) is r:
                tx.reservation_id = r.id
                self._end_reservation(r, "its transaction started", c)
        log.info("station", "connector %d: transaction started for %s at %d Wh" % (c.id, id_tag, meter_start))
        self.save_transactions()  # first, so a cut right after still knows it
        if self.observer:
            self.observer.transaction_started(tx)
        if c.lock:
            c.lock.lock()
        profile = it[3] if it and auth.same(it[0], id_tag) else None
        if profile is not None:  # RemoteStartTransaction's TxProfile (§5.11)
            profile.connector = c.id
            self.profiles().install(profile, tx)
        self._update_limit(c, clock.now())  # the limit with this transaction (TxProfile, Relative)
        self._apply_limit(c)
        self.limits_changed.set()  # and the timer to its next change
        self.refresh(c)
        return tx

    def stop_transaction(self, c, reason, id_tag=None, unlock=True):
        tx = c.transaction
        if tx is None:
            return None
        if c.contactor:
            c.contactor.open()
        if c.pilot:
            c.pilot.offer(None)
        if c.lock and unlock:
            c.lock.unlock()  # §4.10: the cable is released at the end
        energy = c.energy()
        tx.meter_stop = tx.meter_start if energy is None else energy
        tx.stop_time = clock.now()
        tx.stop_reason = reason
        tx.stop_id_tag = id_tag
        tx.stop_data = c.reading
        c.transaction = None
        c.info = None
        if self._charging:
            self._charging.transaction_ended(c.id)
        self.limits_changed.set()
        c.finishing = c.plugged
        log.info("station", "connector %d: transaction stopped (%s), %d Wh delivered" % (
            c.id, reason, tx.meter_stop - tx.meter_start))
        if self.observer:
            self.observer.transaction_stopped(tx)
        self.save_transactions()
        self._apply_scheduled(c)
        self.refresh(c)
        return tx

    def transaction_by_id(self, tx_id):
        for c in self.connectors:
            if c.transaction and c.transaction.id == tx_id:
                return c.transaction
        return None

    # ---- availability (OCPP 1.6 §5.2) -------------------------------------
    def change_availability(self, cid, operative):
        # -> "Accepted" | "Rejected" | "Scheduled". Connector 0 is the station
        # and all its connectors; a connector with a transaction changes when
        # that ends. The wanted state is stored at once: it survives a reboot.
        c0 = self.connectors[0]
        if cid == 0:
            targets = self.connectors[1:]
        else:
            c = self.connector(cid)
            if c is None:
                return "Rejected"
            if operative and not self._wanted(c0):
                log.warn("station", "connector %d cannot be made operative while the station is not" % cid)
                return "Rejected"
            targets = [c]
        later = False
        for c in targets:
            if c.transaction and c.operative != operative:
                c.scheduled = operative
                later = True
                log.info("station", "connector %d becomes %s when its transaction ends" % (
                    c.id, "operative" if operative else "inoperative"))
            else:
                self._set_operative(c, operative)
        if cid == 0:
            if later and c0.operative != operative:
                c0.scheduled = operative
            else:
                self._set_operative(c0, operative)
        try:
            self.store.save("availability", [c.id for c in self.connectors if not self._wanted(c)])
        except OSError:
            pass  # logged by the store; the change holds until the next reboot
        return "Scheduled" if later else "Accepted"

    def _wanted(self, c):
        return c.operative if c.scheduled is None else c.scheduled

    def _set_operative(self, c, operative):
        c.scheduled = None
        if c.operative == operative:
            return
        c.operative = operative
        log.info("station", "%s is now %s" % ("the station" if c.id == 0 else "connector %d" % c.id,
                                                "operative" if operative else "inoperative"))
        if not operative:
            c.authorized = None
        self.refresh(c)

    def _apply_scheduled(self, c):
        # A transaction ended: the availability changes that waited for it.
        if c.scheduled is not None:
            self._set_operative(c, c.scheduled)
        c0 = self.connectors[0]
        if c0.scheduled is not None:
            for o in self.connectors:
                if o.transaction:
                    return
            self._set_operative(c0, c0.scheduled)

    # ---- reservations (OCPP 1.6 §5.13) ------------------------------------
    def reserve(self, rid, cid, expiry, id_tag, parent=None):
        # -> "Accepted" | "Faulted" | "Occupied" | "Rejected" | "Unavailable".
        # A reservation with the same id is replaced; it does not stand in the
        # way of its successor, and stays if the successor is refused.
        c = self.connector(cid) if cid else None
        if cid and c is None or cid == 0 and not self.config.get("ReserveConnectorZeroSupported"):
            status = "Rejected"
        elif expiry is None or expiry <= clock.now():
            status = "Rejected"
        else:
            status = self._reservable(c, self.reservations.get(rid))
        if status != "Accepted":
            log.info("reservation", "reservation %d for %s refused: %s" % (rid, id_tag, status))
            return status
        old = self.reservations.get(rid)
        if old:
            o = self.connector(old.connector_id)
            if o and o.reservation is old:
                o.reservation = None
        r = Reservation(rid, cid, expiry, id_tag, parent)
        self.reservations.add(r)
        if c:
            c.reservation = r
        self.refresh_all()
        return "Accepted"

    def cancel_reservation(self, rid):
        r = self.reservations.get(rid)
        if r is None:
            return False
        self._end_reservation(r, "cancelled by the CSMS")
        return True

    async def expire_reservations(self):
        await self.reservations.run(lambda r: self._end_reservation(r, "expired"))

    def _end_reservation(self, r, why, quiet=None):
        # quiet: a connector not to refresh (its transaction is starting).
        self.reservations.remove(r, why)
        c = self.connector(r.connector_id)
        if c and c.reservation is r:
            c.reservation = None
        for o in self.connectors:
            if o is not quiet:
                self.refresh(o)

    def _release(self, c):
        # §5.13: a reservation ends when its connector, or the station, is
        # Faulted or Unavailable.
        for r in list(self.reservations):
            if c.id == 0 or r.connector_id == c.id:
                self._end_reservation(r, "%s is %s" % ("the station" if c.id == 0 else "connector %d" % c.id,
                                                       "faulted" if c.fault else "unavailable"))

    def _in_pool(self, c, ignore=None):
        # c could take a vehicle now: usable, idle, not reserved (a plugged-in
        # vehicle without a card does not count as taking it).
        c0 = self.connectors[0]
        return (c.id and c0.operative and not c0.fault and c.operative and not c.fault and not c.transaction
                and not c.authorized and not c.finishing and (c.reservation is None or c.reservation is ignore))

    def _pool(self, ignore=None):
        n = 0
        for c in self.connectors:
            if self._in_pool(c, ignore):
                n += 1
        return n

    def _held(self, c):
        # c is one of the last free connectors a connector-0 reservation needs.
        z = self.reservations.zero()
        return z and self._in_pool(c) and self._pool() <= z

    def _reservable(self, c, ignore):
        c0 = self.connectors[0]
        cs = [c] if c else self.connectors[1:]
        if c0.fault or all(x.fault for x in cs):
            return "Faulted"
        if not c0.operative or all(not x.operative for x in cs):
            return "Unavailable"
        zero = self.reservations.zero(ignore)
        if c:
            if c.transaction or c.plugged or c.authorized or c.finishing or c.reservation not in (None, ignore):
                return "Occupied"
            free = self._pool(ignore) - 1 >= zero
        else:
            free = self._pool(ignore) > zero
        return "Accepted" if free else "Occupied"

    def _claim(self, c, id_tag, parent):
        # -> (allowed, reservation it uses up): a reserved connector is only
        # for its holder (tag or parent, §5.13), and the last free connectors
        # only for holders of connector-0 reservations.
        r = c.reservation
        if r:
            return (True, r) if r.held_by(id_tag, parent) else (False, None)
        for r in self.reservations:
            if r.connector_id == 0 and r.held_by(id_tag, parent):
                return True, r
        return not self._held(c), None

    # ---- remote commands ----------------------------------------------------
    def unlock(self, cid, stop_reason):
        # UnlockConnector (§5.18): a running transaction ends first. -> True
        # unlocked, False the lock did not open, None no such connector or no lock.
        c = self.connector(cid)
        if c is None or c.lock is None:
            return None
        if c.transaction:
            self.stop_transaction(c, stop_reason)
        ok = c.lock.unlock()
        if ok:
            c.held_for = None
        log.info("station", "connector %d: %s" % (cid, "cable unlocked" if ok else "the cable lock did not open"))
        return ok

    def stop_all(self, reason):
        for c in self.connectors:
            if c.transaction:
                self.stop_transaction(c, reason)

    def deauthorize(self, tx, reason):
        # The CSMS did not accept the idTag of a running transaction (§3.5.4,
        # errata 3.17): after MaxEnergyOnInvalidId Wh it stops
        # (StopTransactionOnInvalidId) or only the power is cut.
        c = self.connector(tx.connector_id)
        if c is None or c.transaction is not tx:
            return
        tx.cap_reason = reason
        tx.energy_cap = tx.meter_start + self.config.get("MaxEnergyOnInvalidId")
        if tx.energy_cap > tx.meter_start:
            log.info("station", "connector %d: %s may still take %d Wh (MaxEnergyOnInvalidId)" % (
                c.id, tx.id_tag, tx.energy_cap - tx.meter_start))
        self._check_cap(c)

    def _check_cap(self, c):
        tx = c.transaction
        if tx is None or tx.energy_cap is None or (c.energy() or 0) < tx.energy_cap:
            return
        tx.energy_cap = None
        if self.config.get("StopTransactionOnInvalidId"):
            self.stop_transaction(c, tx.cap_reason)
        else:
            log.info("station", "connector %d: power cut, the transaction goes on (StopTransactionOnInvalidId off)" % c.id)
            tx.power_cut = True
            if c.contactor:
                c.contactor.open()
            self.refresh(c)

    # ---- smart charging (OCPP 1.6 §3.13) ------------------------------------
    async def run_limits(self):
        # Works out each connector's limit now and again at its next
        # breakpoint (a timer, not polling), or when profiles or transactions change.
        while True:
            self.limits_changed.clear()
            now = clock.now()
            soonest = 3600
            for c in self.connectors[1:]:
                nxt = self._update_limit(c, now)
                if nxt is not None and nxt < soonest:
                    soonest = nxt
            try:
                await asyncio.wait_for(self.limits_changed.wait(), max(soonest, 0) + 0.05)
            except asyncio.TimeoutError:
                pass

    def _update_limit(self, c, now):
        # -> seconds until c's limit changes next, or None
        if self._charging:
            amps, phases, nxt = self._charging.limit_now(c, now, c.transaction)
        else:
            amps, nxt = c.rating, None
        if amps != c.limit:
            log.info("station", "connector %d: charging limit %.1f A" % (c.id, amps))
            c.limit = amps
            self._apply_limit(c)
            self.refresh(c)
        return nxt

    def profiles(self):
        # -> the charging.ChargingProfiles, imported and loaded on first use
        if self._charging is None:
            from charging import ChargingProfiles
            self._charging = ChargingProfiles(self.store, self.config)
        return self._charging

    def install_profile(self, p):
        # -> None when charging profile p is installed, else why not
        c = self.connectors[p.connector] if 0 <= p.connector < len(self.connectors) else None
        if c is None:
            return "there is no connector %d" % p.connector
        why = self.profiles().install(p, c.transaction if p.connector else None)
        if why is None:
            self.limits_changed.set()
        return why

    def clear_profiles(self, pid=None, connector=None, purpose=None, stack=None):
        n = self.profiles().clear(pid, connector, purpose, stack)
        if n:
            self.limits_changed.set()
        return n

    def offered(self, c):
        # A the vehicle may draw now: 0 when the power is off
        k = c.contactor
        return (c.rating if c.limit is None else c.limit) if c.transaction and k and k.closed else 0.0

    def _apply_limit(self, c):
        # The limit reaches the hardware: the pilot's PWM tells the vehicle
        # (none below the minimum, IEC 61851-1), and the contactor follows.
        if c.pilot:
            tx = c.transaction
            amps = c.rating if c.limit is None else c.limit
            c.pilot.offer(amps if tx and not tx.power_cut and amps >= c.min_current else None)
        self._switch(c)

    def _switch(self, c):
        # The contactor of a transaction closes only with the vehicle there
        # (pilot state C/D where a pilot is sensed, never before C), the power
        # not cut for a refused idTag, and a limit the connector can offer;
        # otherwise it opens (SuspendedEVSE).
        k = c.contactor
        tx = c.transaction
        if k is None or tx is None:
            return
        on = (not tx.power_cut and (c.plugged or c.detect_by_current)
              and (c.limit is None or c.limit >= c.min_current)
              and (c.pilot_state is None or c.pilot_state in ("C", "D")))
        if on:
            k.close()
        else:
            k.open()

    async def watch_pilots(self):
        # IEC 61851-1 wants the vehicle's state acted on within about 100 ms
        # (C -> B: the contactor opens): the pilots are read every 50 ms, apart
        # from the meter poll. Each read measures one PWM period (~1.1 ms).
        pilots = [c for c in self.connectors if c.pilot and c.pilot.senses]
        while pilots:
            for c in pilots:
                self._read_pilot(c)
            await asyncio.sleep_ms(_PILOT_POLL_MS)

    def _read_pilot(self, c):
        # The pilot's state replaces the plug input (IEC 61851-1): A no vehicle,
        # B connected, C/D asks for energy, E/F an error (the connector faults).
        st = c.pilot.state()
        if st is None or st == c.pilot_state:
            return
        log.info("station", "connector %d: control pilot state %s" % (c.id, st))
        c.pilot_state = st
        if st in ("E", "F"):
            if not c.fault:
                log.error("station", "connector %d: control pilot error (state %s)" % (c.id, st))
                c.fault = PILOT_FAILURE
                if c.transaction:
                    self.stop_transaction(c, "Other")
            return
        if c.fault == PILOT_FAILURE:
            c.fault = None
        if st == "A":
            self.unplug(c.id)
        else:
            self.plug(c.id)
        self._switch(c)

    # ---- periodic work --------------------------------------------------
    async def poll_meters(self):
        # The hardware loop: every MeterPollInterval ms read each meter, check
        # contactors and plug inputs, and apply the rules that follow from them.
        while True:
            cfg = self.config
            period = cfg.get("MeterPollInterval")
            for c in self.connectors:
                c.threshold_ma = cfg.get("ChargingCurrentThreshold")
                if c.meter:
                    await self._poll_meter(c, cfg)
                self._check_contactor(c)
                if c.plug_input:
                    if c.plug_input.plugged() != c.plugged:
                        (self.plug if not c.plugged else self.unplug)(c.id)
                if c.meter and c.meter_ok:
                    self._current_rules(c, cfg)
                    self._check_cap(c)
                if c.authorized and time.ticks_diff(time.ticks_ms(), c.auth_deadline) >= 0:
                    log.info("station", "connector %d: no vehicle plugged in time, authorization lapsed" % c.id)
                    c.authorized = None
                    self._tell("authorization_lapsed", c)
                if c.id and cfg.get("FreeVendEnabled") and not c.transaction and c.contactor:
                    # Free vend: power is on whenever the connector is idle and usable.
                    if c.operative and not c.fault:
                        c.contactor.close()
                    else:
                        c.contactor.open()
                self.refresh(c)
            await asyncio.sleep_ms(period)

    async def _poll_meter(self, c, cfg):
        # A failed read keeps the last good reading (used for meterStop) but it
        # is never reported as fresh; enough failures in a row fault the connector.
        r = await c.meter.read()
        if r is not None:
            r[OFFERED] = self.offered(c)
            c.reading = r
            c.reading_time = clock.now()
            c.meter_failures = 0
            if not c.meter_ok:
                c.meter_ok = True
                log.info("station", "connector %d: the energy meter answers again" % c.id)
                if c.fault == METER_FAILURE:
                    c.fault = None
            return
        c.meter_failures += 1
        if c.meter_ok:
            c.meter_ok = False
            log.warn("station", "connector %d: the energy meter did not answer" % c.id)
        if c.meter_failures == cfg.get("MeterFailuresBeforeFault") and not c.fault:
            log.error("station", "connector %d: energy meter failed %d polls in a row" % (c.id, c.meter_failures))
            c.fault = METER_FAILURE

    def _check_contactor(self, c):
        # A contactor that does not follow its command faults the connector and
        # ends the session (a welded contact cannot be switched off).
        k = c.contactor
        if k is None or not hasattr(k, "ok"):
            return
        if not k.ok():
            if c.fault != SWITCH_FAILURE:
                log.error("station", "connector %d: contactor does not follow its command" % c.id)
                c.fault = SWITCH_FAILURE
                if c.transaction:
                    self.stop_transaction(c, "Other")
        elif c.fault == SWITCH_FAILURE:
            log.info("station", "connector %d: contactor works again" % c.id)
            c.fault = None

    def _current_rules(self, c, cfg):
        # Vehicle detection and automatic start/stop from the measured current
        # (for connectors without a plug signal, and AutoStopIdleSeconds).
        now = time.ticks_ms()
        if c.drawing():
            if c.transaction:
                c.transaction.drawn = True
            c.idle_since = None
            if c.draw_since is None:
                c.draw_since = now
            held = time.ticks_diff(now, c.draw_since) >= cfg.get("ChargingDetectSeconds") * 1000
            if held and c.detect_by_current and not c.plugged:
                self.plug(c.id)
            if held and not c.transaction and c.plugged and cfg.get("FreeVendEnabled"):
                self.start_transaction(c, cfg.get("FreeVendIdTag")).drawn = True
            return
        c.draw_since = None
        tx = c.transaction
        idle = cfg.get("AutoStopIdleSeconds")
        if tx is None or idle == 0 or not tx.drawn:
            return
        if c.idle_since is None:
            c.idle_since = now
        elif time.ticks_diff(now, c.idle_since) >= idle * 1000:
            log.info("station", "connector %d: no current for %d s, ending the session" % (c.id, idle))
            c.idle_since = None
            if c.detect_by_current:
                self.unplug(c.id)
            if c.transaction:
                self.stop_transaction(c, "EVDisconnected")
