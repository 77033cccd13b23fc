# OCPP 2.0.1 charge point: the same station model as ocpp/v16, told in 2.0.1's
# words. Boot (B01-B04), Heartbeat, StatusNotification per EVSE (G01), the
# transaction events (E01-E14: TransactionEvent Started / Updated / Ended
# with our own transactionId and a seqNo per transaction), meter values (J01,
# J02), Authorize (C01), TriggerMessage (F06) and Reset (B11, B12).
# Mapping (notes/v201-plan.md): EVSE n = station connector n, its only
# connector is 1; station connector 0 has no StatusNotification.
import asyncio
import time
import clock
import log
import slots
import security
from ocpp import check
from ocpp.rpc import Rpc, CallError, CallTimeout, NotConnected
from ocpp.v201 import handlers, tables
from ocpp.session import Session, why as _why
from station import split_phase

from version import VERSION as FIRMWARE_VERSION

ENERGY = "Energy.Active.Import.Register"
# unitOfMeasure per measurand: one dict each, shared by every sampled value
_UNITS = {
    ENERGY: {"unit": "Wh"},
    "Energy.Active.Export.Register": {"unit": "Wh"},
    "Power.Active.Import": {"unit": "W"},
    "Power.Active.Export": {"unit": "W"},
    "Current.Import": {"unit": "A"},
    "Current.Offered": {"unit": "A"},
    "Voltage": {"unit": "V"},
    "Frequency": {"unit": "Hz"},
}
_PHASES = ("L1", "L2", "L3")
_VOLT_PHASES = ("L1-N", "L2-N", "L3-N")
_OCCUPIED = ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing")
_FLOWING = ("Charging", "SuspendedEV", "SuspendedEVSE")
# the station's stop reasons (1.6 names) -> stoppedReason, triggerReason of the Ended event
STOPS = {
    "Local": ("Local", "StopAuthorized"),
    "Remote": ("Remote", "RemoteStop"),
    "EVDisconnected": ("EVDisconnected", "EVCommunicationLost"),
    "PowerLoss": ("PowerLoss", "AbnormalCondition"),
    "Reboot": ("Reboot", "ResetCommand"),
    "HardReset": ("ImmediateReset", "ResetCommand"),
    "SoftReset": ("ImmediateReset", "ResetCommand"),
    "DeAuthorized": ("DeAuthorized", "Deauthorized"),
    "UnlockCommand": ("Other", "UnlockCommand"),
    "EmergencyStop": ("EmergencyStop", "AbnormalCondition"),
}
CARD = "ISO14443"  # the idToken type of a card from the reader or the console


def connector_status(status):
    # the station's (1.6) connector status -> 2.0.1 connectorStatus
    return "Occupied" if status in _OCCUPIED else status


def id_tag_info(i):
    # 2.0.1 idTokenInfo -> the station's (1.6-shaped) idTagInfo
    out = {"status": i["status"]}
    if i.get("cacheExpiryDateTime"):
        out["expiryDate"] = i["cacheExpiryDateTime"]
    g = i.get("groupIdToken")
    if g:
        out["parentIdTag"] = g["idToken"]
    return out


def sampled_values(reading, measurands, context):
    # [{"value": 1234, "context": ..., "measurand": ..., "unitOfMeasure": {...}}, ...]:
    # a per-phase measurand gives every phase, or the one it names (Voltage.L2).
    out = []
    if reading is None:
        return out
    for m in measurands:
        base, i = split_phase(m)
        v = reading.get(base)
        if v is None:
            continue
        if type(v) is tuple:
            names = _VOLT_PHASES if base == "Voltage" else _PHASES
            for k in range(len(v)) if i is None else (i,) if i < len(v) else ():
                out.append(_sample(v[k], context, base, names[k]))
        elif i is None:
            out.append(_sample(v, context, base, None))
    return out


def _sample(v, context, measurand, phase):
    unit = _UNITS.get(measurand)
    s = {"value": round(v) if unit is _UNITS[ENERGY] else round(v, 1), "context": context, "measurand": measurand}
    if unit:
        s["unitOfMeasure"] = unit
    if phase:
        s["phase"] = phase
    return s


def meter_value(t, reading, measurands, context):
    # -> [{"timestamp", "sampledValue"}], or None when nothing is to be said
    values = sampled_values(reading, measurands, context)
    return [{"timestamp": clock.iso(t), "sampledValue": values}] if values else None


class ChargePoint(Session):
    PROTOCOL = "ocpp2.0.1"
    ACCEPTED = "the CSMS accepted this charging station"

    def __init__(self, station, config, boot_fields, root="", outbox=None):
        self.station = station
        self.config = config
        self.boot_fields = boot_fields  # meter / modem fields: modem {iccid, imsi}
        self.rpc = Rpc(handlers.table(self), check.make(tables, True), self._gate, v201=True)
        if outbox is None:
            from ocpp.outbox import Outbox
            outbox = Outbox(root, config.get("TransactionQueueBytes"))
        self.outbox = outbox
        outbox.proto = 2  # only 2.0.1 entries are seen (and replayed) from now on
        self.registration = None  # None until the first answer, then Accepted/Pending/Rejected
        self.online = False
        self.wake = asyncio.Event()
        security.wake = self.wake  # a queued SecurityEventNotification goes out at once
        self._last_aligned = 0  # the AlignedDataCtrlr.Interval slot last sampled
        self._last_aligned_end = 0  # the AlignedDataCtrlr.TxEndedInterval slot last kept
        self._reported = {}  # evse id -> connectorStatus last queued for the CSMS
        self.states = {}  # evse id -> chargingState last told of its transaction
        self._cause = {}  # evse id -> triggerReason of the next transaction event (plug in / out)
        self._remote = {}  # evse id -> [idToken, type, remoteStartId] of a RequestStartTransaction under way
        self.pending_reset = False  # a Reset OnIdle waits for the transactions to end
        self.offline_at = None  # ticks_ms when the last session ended
        self._boot_not_before = time.ticks_ms()
        self._boot_wake = asyncio.Event()  # TriggerMessage(BootNotification) while Pending
        self._reason = handlers.rare("restart", "boot_reason", station.store)  # BootNotification.reason
        self.on_reset = None  # fn(hard, by=None): restarts the firmware (set by app for the port)
        self.tls = None  # () -> the CSMS link's TLS context, for https:// transfers (set by app)
        self.link = None  # the ocpp.link.Link that connects it (set by app)
        self.fw_job = None  # maintenance.FirmwareUpdate once asked for
        self.fw_request = None  # requestId of the UpdateFirmware under way
        for r in station.interrupted:  # their last seqNo must survive until recover() ends them
            outbox.keep.add(r["local"])
        station.observer = self
        self._listener = self._config_changed  # (one bound method: unlisten finds it)
        config.listen(self._listener)

    def _accepted(self):
        return self.online and self.registration == "Accepted"

    # ---- station observer ------------------------------------------------
    def status_changed(self, c):
        if c.id == 0:
            return  # the station as a whole: no StatusNotification in 2.0.1
        tx = c.transaction
        if tx and c.id in self.states:
            state = self.charging_state(c)
            if state != self.states[c.id]:
                self.states[c.id] = state
                self.event(tx.local_id, tx.uid, "Updated", self._cause.pop(c.id, "ChargingStateChanged"),
                            clock.now(), {"chargingState": state})
        if self._accepted() and self._reported.get(c.id) != connector_status(c.status):
            self.queue_status(c)

    def charging_state(self, c):
        # (the status may still be the one before the change being told: no
        # transaction any more means no energy flows, whatever it says)
        if not (c.plugged or c.detect_by_current):
            return "Idle"
        return c.status if c.transaction and c.status in _FLOWING else "EVConnected"

    def queue_status(self, c):
        s = connector_status(c.status)
        self._reported[c.id] = s
        self.outbox.put("StatusNotification", {"timestamp": clock.iso(), "connectorStatus": s,
                                               "evseId": c.id, "connectorId": 1})
        self.wake.set()

    def vehicle(self, c, plugged):
        # The cable went in or out: the triggerReason of the event it causes
        # (the Started that follows an authorization, or the chargingState change).
        if c.transaction or plugged and c.authorized:
            self._cause[c.id] = "CablePluggedIn" if plugged else "EVCommunicationLost"

    def authorization_lapsed(self, c):
        self._remote.pop(c.id, None)  # F04: no vehicle in time, no transaction
        self._cause.pop(c.id, None)

    def _token(self, id_tag):
        # -> the idToken of an idTag: a remote start keeps the type it came
        # with, a free-vend session has none (NoAuthorization), a card is ISO14443
        for r in self._remote.values():
            if r[0] == id_tag:
                return {"idToken": id_tag, "type": r[1]}
        if self.config.get("FreeVendEnabled") and id_tag == self.config.get("FreeVendIdTag"):
            return {"idToken": "", "type": "NoAuthorization"}
        return {"idToken": id_tag, "type": CARD}

    def transaction_started(self, tx):
        c = self.station.connector(tx.connector_id)
        tx.start_data = c.reading
        tx.last_sample = tx.last_kept = time.ticks_ms()
        info = {"chargingState": self.charging_state(c)}
        reason = self._cause.pop(c.id, None) or "Authorized"
        token = self._token(tx.id_tag)
        r = self._remote.pop(c.id, None)
        if r and r[0] == tx.id_tag:  # the first event after RequestStartTransaction
            reason = "RemoteStart"
            info["remoteStartId"] = r[2]
        elif token["type"] == "NoAuthorization":
            reason = "ChargingStateChanged"  # free vend: the vehicle began to draw
        more = {"evse": {"id": c.id, "connectorId": 1}, "idToken": token}
        mv = meter_value(tx.start_time, c.reading, self.config.get("TxStartedMeasurands"), "Transaction.Begin")
        if mv:
            more["meterValue"] = mv
        if tx.reservation_id is not None:
            more["reservationId"] = tx.reservation_id
        self.states[c.id] = info["chargingState"]
        self.outbox.keep.add(tx.local_id)
        self.event(tx.local_id, tx.uid, "Started", reason, tx.start_time, info, more)
        log.info("ocpp", "EVSE %d: transaction %s started (%s)" % (c.id, tx.uid, reason))

    def transaction_stopped(self, tx):
        c = self.station.connector(tx.connector_id)
        stopped, reason = STOPS.get(tx.stop_reason, ("Other", "AbnormalCondition"))
        if self.states.pop(c.id, None) is None:
            # started under OCPP 1.6 before the CSMS chose 2.0.1: this CSMS never heard of it
            log.warn("ocpp", "EVSE %d: the transaction of %s began before the switch to 2.0.1: not reported" % (
                c.id, tx.id_tag))
            self.outbox.keep.discard(tx.local_id)
            return
        self._cause.pop(c.id, None)
        info = {"chargingState": self.charging_state(c), "stoppedReason": stopped}
        more = {}
        mv = self._ended_values(tx)
        if mv:
            more["meterValue"] = mv
        if tx.stop_id_tag and tx.stop_id_tag != tx.id_tag:  # another card of the group ended it
            more["idToken"] = {"idToken": tx.stop_id_tag, "type": CARD}
        self.event(tx.local_id, tx.uid, "Ended", reason, tx.stop_time, info, more)
        self.outbox.keep.discard(tx.local_id)
        log.info("ocpp", "EVSE %d: transaction %s ended (%s)" % (c.id, tx.uid, stopped))
        if self.pending_reset and not any(o.transaction for o in self.station.connectors):
            self.pending_reset = False
            asyncio.create_task(self.reset(False, True))  # B12.FR.01: the OnIdle reset that waited

    def _ended_values(self, tx):
        # TxEndedMeasurands: Transaction.Begin, the kept samples, Transaction.End
        # (errata 3.16.6 of 1.6: the Begin and End values of every measurand
        # configured); the energy register at least, as the meterStop of 1.6.
        cfg = self.config
        ms = cfg.get("StopTxnSampledData") + [m for m in cfg.get("StopTxnAlignedData")
                                              if m not in cfg.get("StopTxnSampledData")] or [ENERGY]
        out = []
        rows = [(tx.start_time, "Transaction.Begin", ms, tx.start_data)]
        for t, ctx, kms, values in tx.samples:
            rows.append((t, ctx, kms, {split_phase(m)[0]: v for m, v in zip(kms, values)}))
        rows.append((tx.stop_time, "Transaction.End", ms, tx.stop_data))
        tx.samples = []
        for t, ctx, kms, reading in rows:
            mv = meter_value(t, reading, kms, ctx)
            if mv:
                out.append(mv[0])
        return out

    def event(self, local, uid, kind, reason, t, info=None, more=None, periodic=False):
        # One TransactionEvent into the persistent outbox. seqNo: the last one
        # given to this transaction + 1, written down first (outbox.set_id), so
        # that none is given twice, even across a power cut (from 0, contiguous
        # per transaction: the CSMS tells from them what is missing).
        n = self.outbox.tx_id(local)
        n = 0 if n is None else n + 1
        self.outbox.set_id(local, n)
        ti = {"transactionId": uid}
        if info:
            ti.update(info)
        p = {"eventType": kind, "timestamp": clock.iso(t), "triggerReason": reason, "seqNo": n,
             "transactionInfo": ti}
        if more:
            p.update(more)
        if not self.online:
            p["offline"] = True  # E04: it happened while the CSMS could not be told
        self.outbox.put("TransactionEvent", p, local, periodic)
        self.wake.set()

    async def authorize(self, id_tag):
        # -> idTagInfo (1.6-shaped, for the station). Online the CSMS decides
        # (C01), unless LocalPreAuthorize lets a valid local list or cache
        # entry start at once; every answer feeds the cache (C10). Offline (or
        # no answer) the station decides: LocalAuthorizeOffline,
        # OfflineTxForUnknownIdEnabled (C15).
        auth = self.station.auth
        if self._accepted():
            if self.config.get("LocalPreAuthorize"):
                info, where = auth.lookup(id_tag)
                if info and info["status"] == "Accepted":
                    log.info("auth", "%s accepted from the %s (LocalPreAuthorize)" % (id_tag, where))
                    return info
            try:
                answer = await self.rpc.call("Authorize", {"idToken": self._token(id_tag)},
                                             self.config.get("MessageTimeout"))
                info = id_tag_info(answer["idTokenInfo"])
                auth.learn(id_tag, info)
                return info
            except (CallError, CallTimeout, NotConnected) as e:
                log.warn("auth", "Authorize for %s failed (%s), deciding offline" % (id_tag, _why(e)))
        return auth.offline(id_tag)

    # ---- the CSMS side of boot (B02, B03) ---------------------------------
    def _gate(self, action):
        # Rejected: every CALL is answered SecurityError (B03.FR.08, errata
        # 2023-12). Pending (or no answer yet): answered, but no remote start
        # or stop (B02.FR.05).
        if self.registration == "Rejected":
            return CallError("SecurityError", "the CSMS rejected this charging station's boot")
        if self.registration != "Accepted" and action in ("RequestStartTransaction", "RequestStopTransaction"):
            return {"status": "Rejected"}
        return None

    # ---- one connection ----------------------------------------------------
    async def _talk(self, ws):
        try:
            every = self.registration != "Accepted"
            if every:
                await self._boot()
            elif self.offline_at is not None:
                # B04.FR.01/02: offline longer than OfflineThreshold, every
                # connector's status; shorter, the ones that changed meanwhile
                gone = time.ticks_diff(time.ticks_ms(), self.offline_at) // 1000
                every = gone >= self.config.get("OfflineThreshold")
            self._report_update()  # until the CSMS answered it
            for c in self.station.connectors[1:]:
                if every or self._reported.get(c.id) != connector_status(c.status):
                    self.queue_status(c)
            await self._send_loop()
        except asyncio.CancelledError:
            raise
        except NotConnected:
            pass  # the reader side reports the lost link
        except Exception as e:
            log.exc("ocpp", "session failed, reconnecting", e)
            await ws.close()

    def _boot_payload(self):
        cs = {"model": self.config.get("ChargePointModel"), "vendorName": self.config.get("ChargePointVendor"),
              "firmwareVersion": FIRMWARE_VERSION}
        serial = self.config.get("ChargePointSerialNumber") or self.config.get("ChargeBoxSerialNumber")
        if serial:
            cs["serialNumber"] = serial
        modem = {}
        for k in ("iccid", "imsi"):
            if self.boot_fields.get(k):
                modem[k] = self.boot_fields[k]
        if modem:
            cs["modem"] = modem
        return {"reason": self._reason, "chargingStation": cs}

    def _answered(self, e, answer):
        # idTokenInfo of a TransactionEventResponse: into the cache (C10); a
        # running transaction whose idToken the CSMS does not accept is
        # deauthorized (E05: StopTxOnInvalidId, MaxEnergyOnInvalidId).
        i = answer.get("idTokenInfo")
        tok = e.payload.get("idToken")
        if e.action != "TransactionEvent" or not i or not tok or not tok["idToken"]:
            return
        info = id_tag_info(i)
        self.station.auth.learn(tok["idToken"], info)
        if e.payload["eventType"] == "Ended" or info["status"] == "Accepted":
            return
        for c in self.station.connectors:
            tx = c.transaction
            if tx and tx.local_id == e.local and tx.id_tag == tok["idToken"]:
                log.warn("auth", "the CSMS did not accept %s for the transaction: %s" % (tx.id_tag, info["status"]))
                self.station.deauthorize(tx, "DeAuthorized")

    # ---- meter values (E02 Updated, J01, J02) ---------------------------------
    async def sample_meters(self):
        # Every TxUpdatedInterval (MeterValueSampleInterval) an Updated event
        # with MeterValuePeriodic; at each AlignedDataCtrlr.Interval
        # (ClockAlignedDataInterval) boundary an Updated with MeterValueClock,
        # or a MeterValues for an EVSE without a transaction. The samples of
        # the Ended event: every SampledDataCtrlr.TxEndedInterval, and at each
        # AlignedDataCtrlr.TxEndedInterval boundary.
        while True:
            await asyncio.sleep(1)
            now_ms = time.ticks_ms()
            cfg = self.config
            period = cfg.get("MeterValueSampleInterval") * 1000
            ended = cfg.get("SampledDataTxEndedInterval") * 1000
            for c in self.station.connectors:
                tx = c.transaction
                if tx is None or c.id not in self.states:
                    continue  # (a transaction begun under 1.6 is not ours to tell)
                if period > 0 and time.ticks_diff(now_ms, tx.last_sample) >= period:
                    tx.last_sample = now_ms
                    self._meter_values(c, tx, cfg.get("MeterValuesSampledData"), "Sample.Periodic")
                if ended > 0 and time.ticks_diff(now_ms, tx.last_kept) >= ended:
                    tx.last_kept = now_ms
                    self._keep(c, tx, cfg.get("StopTxnSampledData"), "Sample.Periodic")
            if not clock.synced():
                continue
            now = clock.now()
            aligned = cfg.get("ClockAlignedDataInterval")
            if aligned > 0 and now // aligned != self._last_aligned:
                first = self._last_aligned == 0
                self._last_aligned = now // aligned
                for c in self.station.connectors[1:] if not first else ():
                    tx = c.transaction if c.id in self.states else None
                    self._meter_values(c, tx, cfg.get("MeterValuesAlignedData"), "Sample.Clock")
            aligned = cfg.get("AlignedDataTxEndedInterval")
            if aligned > 0 and now // aligned != self._last_aligned_end:
                first = self._last_aligned_end == 0
                self._last_aligned_end = now // aligned
                for c in self.station.connectors[1:] if not first else ():
                    if c.id in self.states:
                        self._keep(c, c.transaction, cfg.get("StopTxnAlignedData"), "Sample.Clock")

    def _meter_values(self, c, tx, measurands, context):
        if c.reading is None or not c.meter_ok or not measurands:
            return  # no fresh reading: nothing stale is ever sent as new
        if tx is None and not self._accepted():
            return  # readings outside a transaction are not kept while offline
        mv = meter_value(c.reading_time, c.reading, measurands, context)
        if not mv:
            return
        if tx is None:
            self.outbox.put("MeterValues", {"evseId": c.id, "meterValue": mv})
            self.wake.set()
            return
        periodic = context == "Sample.Periodic"
        self.event(tx.local_id, tx.uid, "Updated", "MeterValuePeriodic" if periodic else "MeterValueClock",
                    c.reading_time, None, {"meterValue": mv}, periodic)
        # after the journal write: the line means the reading is kept
        log.info("meter", "EVSE %d: %d Wh, %d W (%s)" % (c.id, c.energy(), c.reading.get("Power.Active.Import", 0),
                                                         context))

    # ---- after a restart ---------------------------------------------------------
    async def recover(self):
        # Transactions that were running when the power went (or the firmware
        # died) end now (restart.py, imported for it); the restart record
        # says whether the last run ended in a commanded restart (Reboot).
        store = self.station.store
        reason = "PowerLoss"
        if store.load("restart"):  # written by tasks.clean_stop: it describes this boot only
            reason = "Reboot"
            store.remove("restart")
        if self.station.interrupted:
            await handlers.rare("restart", "recover", self, reason)

    # ---- TriggerMessage (F06) and Reset (B11, B12): trigger.py, restart.py ------
    async def _boot_now(self):
        # TriggerMessage(BootNotification) while not Accepted: at once, reason Triggered
        self._reason = "Triggered"
        self._boot_not_before = time.ticks_ms()
        self._boot_wake.set()

    def reset(self, immediate, scheduled=False):
        # -> the coroutine that ends the transactions and restarts
        return handlers.rare("restart", "reset", self, immediate, scheduled)

    # ---- Firmware update (L01) ------------------------------------------------
    def maintenance(self, firmware=True):
        # maintenance.FirmwareUpdate, made on first use: maintenance.py is not
        # imported before a CSMS asks for an update (app.py resumes a stored
        # one at boot). No log upload in this 2.0.1 package (GetLog: N01).
        if self.fw_job is None:
            import maintenance
            self.fw_job = maintenance.FirmwareUpdate(self.station, self.firmware_status, self.tls,
                                                     self._restart_for_update)
        return self.fw_job

    def firmware_status(self, status, request_id=None):
        # FirmwareStatusNotification with the requestId of its UpdateFirmware
        p = {"status": status}
        rid = self.fw_request if request_id is None else request_id
        if rid is not None:
            p["requestId"] = rid
        self.outbox.put("FirmwareStatusNotification", p)
        self.wake.set()

    def _report_update(self):
        # The boot stage's word on the update installed before this boot, once
        # (firmware.py, imported only then)
        done = slots.outcome()
        if done:
            handlers.rare("firmware", "report", self, done)

    # ---- CS-initiated DataTransfer (P02) ------------------------------------------
    async def data_transfer(self, vendor_id, message_id=None, data=None):
        p = {"vendorId": vendor_id}
        if message_id:
            p["messageId"] = message_id
        if data is not None:
            p["data"] = data
        return await self.rpc.call("DataTransfer", p)
