# The station model: connectors, their status, transactions and meter readings.
# It knows nothing of OCPP frames or of hardware details: hardware sits behind
# small port objects (meter.read(), contactor.close()/open()), and the protocol
# layer is an observer told about status changes and transactions.
import asyncio
import time
from micropython import const
import clock
import log

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
        self.meter_stop = None
        self.stop_time = None
        self.stop_reason = None
        self.stop_id_tag = None
        self.stop_data = None  # readings at the stop, for StopTxnSampledData
        self.drawn = False  # the vehicle has drawn current during this transaction


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
        self.transaction = None
        self.authorized = None  # idTag authorized before the plug went in
        self.auth_deadline = 0  # ticks_ms: the authorization lapses (ConnectionTimeOut)
        self.finishing = False  # transaction ended, vehicle still plugged
        self.reading = None  # last good meter reading {measurand: value}
        self.reading_time = 0  # Unix time of that reading
        self.reservation = None
        self.plug_input = None  # plug detection pin; None: console (simulator) or current
        self.detect_by_current = False  # no plug signal: a drawing vehicle counts as plugged in
        self.meter_ok = True  # the last poll answered
        self.meter_failures = 0  # consecutive failed polls
        self.threshold_ma = 500
        self.draw_since = None  # ticks_ms when the current went above / below the threshold
        self.idle_since = None

    def energy(self):
        # Energy register in Wh, or None while the meter has not answered.
        r = self.reading
        return None if r is None else int(r.get(ENERGY, 0))

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
            if not self.contactor or not self.contactor.closed:
                return SUSPENDED_EVSE
            return CHARGING if self.drawing() else SUSPENDED_EV
        if not self.operative:
            return UNAVAILABLE
        if self.finishing:
            return FINISHING
        if self.plugged or self.authorized:
            return PREPARING
        if self.reservation:
            return RESERVED
        return AVAILABLE


class Station:
    # observer: an object with status_changed(connector), transaction_started(tx),
    # transaction_stopped(tx), and an async authorize(id_tag) -> idTagInfo dict.
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
                                     "reservationId": tx.reservation_id, "id": tx.id}
        try:
            self.store.save("transactions", {"next": self._next_local, "active": active})
        except OSError as e:
            log.exc("station", "cannot store the running transactions", e)

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
        error = c.fault or NO_ERROR
        if status != c.status or error != c.error_code:
            log.info("station", "connector %d: %s -> %s%s" % (
                c.id, c.status, status, "" if error == NO_ERROR else " (%s)" % error))
            c.status = status
            c.error_code = error
            if self.observer:
                self.observer.status_changed(c)

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
        if c.authorized and not c.transaction:
            self.start_transaction(c, c.authorized)
        self.refresh(c)

    def unplug(self, cid):
        c = self.connector(cid)
        if c is None or not c.plugged:
            return
        c.plugged = False
        c.finishing = False
        log.info("station", "connector %d: vehicle unplugged" % cid)
        if c.transaction and self.config.get("StopTransactionOnEVSideDisconnect"):
            self.stop_transaction(c, "EVDisconnected")
            c.finishing = False
        self.refresh(c)

    async def present_card(self, cid, id_tag):
        # A card at connector cid: stops its transaction if it is the same card,
        # otherwise authorizes it and starts charging once a vehicle is plugged in.
        c = self.connector(cid)
        if c is None:
            log.warn("station", "card %s at unknown connector %d" % (id_tag, cid))
            return
        tx = c.transaction
        if tx:
            if tx.id_tag == id_tag:
                log.info("station", "connector %d: card %s ends the session" % (cid, id_tag))
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
        log.info("station", "card %s accepted" % id_tag)
        self.begin(c, id_tag)

    def begin(self, c, id_tag):
        # An authorized idTag: charge now if a vehicle is plugged in, otherwise
        # wait ConnectionTimeOut seconds for one.
        if c.transaction:
            return
        if c.plugged or c.detect_by_current:
            self.start_transaction(c, id_tag)
        else:
            c.authorized = id_tag
            c.auth_deadline = time.ticks_add(time.ticks_ms(), self.config.get("ConnectionTimeOut") * 1000)
        self.refresh(c)

    def free_connector(self, cid=None):
        # The connector a remote start may use: the one asked for, or the first
        # one that is operative and idle. None when there is none.
        cands = [self.connector(cid)] if cid else self.connectors[1:]
        for c in cands:
            if c and c.operative and not c.fault and not c.transaction and not c.authorized:
                return c
        return None

    async def remote_start(self, c, id_tag, authorize_first):
        # RemoteStartTransaction (OCPP 1.6 §5.11): optionally authorize first.
        log.info("station", "connector %d: remote start for %s" % (c.id, id_tag))
        if authorize_first:
            status = (await self.observer.authorize(id_tag)).get("status")
            if status != "Accepted":
                log.info("station", "remote start refused, %s is %s" % (id_tag, status))
                return
        self.begin(c, id_tag)

    # ---- transactions ---------------------------------------------------
    def start_transaction(self, c, id_tag, reservation_id=None):
        meter_start = c.energy()
        if meter_start is None:
            meter_start = 0
            log.warn("station", "connector %d: no meter reading yet, meterStart 0" % c.id)
        tx = Transaction(c.id, id_tag, meter_start, clock.now(), reservation_id)
        tx.local_id = self._next_local
        self._next_local += 1
        c.transaction = tx
        c.authorized = None
        c.finishing = False
        log.info("station", "connector %d: transaction started for %s at %d Wh" % (c.id, id_tag, meter_start))
        self.save_transactions()  # first, so a cut right after still knows it
        if self.observer:
            self.observer.transaction_started(tx)
        if c.contactor:
            c.contactor.close()
        self.refresh(c)
        return tx

    def stop_transaction(self, c, reason, id_tag=None):
        tx = c.transaction
        if tx is None:
            return None
        if c.contactor:
            c.contactor.open()
        energy = c.energy()
        tx.meter_stop = tx.meter_start if energy is None else energy
        tx.stop_time = clock.now()
        tx.stop_reason = reason
        tx.stop_id_tag = id_tag
        tx.stop_data = c.reading
        c.transaction = None
        c.finishing = c.plugged
        log.info("station", "connector %d: transaction stopped (%s), %d Wh delivered" % (
            c.id, reason, tx.meter_stop - tx.meter_start))
        if self.observer:
            self.observer.transaction_stopped(tx)
        self.save_transactions()
        self.refresh(c)
        return tx

    def transaction_by_id(self, tx_id):
        for c in self.connectors:
            if c.transaction and c.transaction.id == tx_id:
                return c.transaction
        return None

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
                if c.authorized and time.ticks_diff(time.ticks_ms(), c.auth_deadline) >= 0:
                    log.info("station", "connector %d: no vehicle plugged in time, authorization lapsed" % c.id)
                    c.authorized = None
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
