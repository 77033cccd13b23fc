# OCPP 1.6 charge point: turns station events into CALLs, runs the boot
# procedure (§4.2), Heartbeat (§4.6), meter sampling (§4.7) and the outbox.
import asyncio
import time
import clock
import log
import slots
import security
from ocpp import check
from ocpp.rpc import Rpc, CallError, CallTimeout, NotConnected
from ocpp.outbox import Outbox
from ocpp.v16 import handlers, tables
from ocpp.session import Session, csms_time, why as _why
from station import split_phase

from version import VERSION as FIRMWARE_VERSION

# Measurand units (OCPP 1.6 §7.31 UnitOfMeasure); Frequency has none in 1.6.
_UNITS = {
    "Energy.Active.Import.Register": "Wh",
    "Energy.Active.Export.Register": "Wh",
    "Power.Active.Import": "W",
    "Power.Active.Export": "W",
    "Current.Import": "A",
    "Current.Offered": "A",
    "Voltage": "V",
}
_PHASES = ("L1", "L2", "L3")
_VOLT_PHASES = ("L1-N", "L2-N", "L3-N")


def sampled_values(reading, measurands, context):
    # [{"value": "1234", "context": ..., "measurand": ..., "unit": ...}, ...];
    # a per-phase measurand gives every phase, or the one it names (Voltage.L2).
    out = []
    if reading is None:
        return out
    for m in measurands:
        base, i = split_phase(m)
        v = reading.get(base)
        if v is None:
            continue
        unit = _UNITS.get(base)
        if type(v) is tuple:
            names = _VOLT_PHASES if base == "Voltage" else _PHASES
            for k in range(len(v)) if i is None else (i,) if i < len(v) else ():
                out.append(_sample(v[k], context, base, unit, names[k]))
        elif i is None:
            out.append(_sample(v, context, base, unit, None))
    return out


def _sample(v, context, measurand, unit, phase):
    s = {"value": str(round(v)) if unit == "Wh" else "%.1f" % v, "context": context, "measurand": measurand}
    if unit:
        s["unit"] = unit
    if phase:
        s["phase"] = phase
    return s


def transaction_data(tx, begin_end):
    # transactionData of StopTransaction: Transaction.Begin, the kept samples,
    # Transaction.End; empty when nothing is configured (errata 3.14.5).
    data = []
    rows = [(tx.start_time, "Transaction.Begin", begin_end, tx.start_data)]
    for t, ctx, ms, values in tx.samples:
        rows.append((t, ctx, ms, {split_phase(m)[0]: v for m, v in zip(ms, values)}))
    rows.append((tx.stop_time, "Transaction.End", begin_end, tx.stop_data))
    for t, ctx, ms, reading in rows:
        values = sampled_values(reading, ms, ctx)
        if values:
            data.append({"timestamp": clock.iso(t), "sampledValue": values})
    return data


class ChargePoint(Session):
    PROTOCOL = "ocpp1.6"  # the WebSocket subprotocol it speaks

    def __init__(self, station, config, boot_fields, root="", outbox=None):
        self.station = station
        self.config = config
        self.boot_fields = boot_fields  # meter / modem fields for BootNotification
        self.rpc = Rpc(handlers.table(self), check.make(tables), self._gate)
        # app.py makes the outbox before the station, so that the security events of the boot are journaled
        self.outbox = Outbox(root, config.get("TransactionQueueBytes")) if outbox is None else outbox
        self.outbox.proto = 1  # it sees the messages queued for OCPP 1.6 only
        self.registration = None  # None until the first answer, then Accepted/Pending/Rejected
        self.online = False
        self.wake = asyncio.Event()
        security.wake = self.wake  # a queued SecurityEventNotification goes out at once
        self._last_aligned = 0
        self._reported = {}  # connector id -> (status, errorCode) last queued for the CSMS
        self._status_due = {}  # connector id -> ticks_ms when its changed status has held long enough
        self._boot_not_before = time.ticks_ms()
        self._boot_wake = asyncio.Event()  # TriggerMessage(BootNotification) while Pending
        self.on_reset = None  # fn(hard, by=None): restarts the firmware (set by main for the port)
        self.tls = None  # () -> the CSMS link's TLS context, for https:// transfers (set by main)
        self.link = None  # the ocpp.link.Link that connects it (set by main): profile, certificate store
        self._jobs = [None, None]  # maintenance.DiagnosticsUpload, .FirmwareUpdate once asked for
        self._cert_due = None  # Unix time of the next look at the client certificate (A03); 0: at once
        station.observer = self
        self._listener = self._config_changed
        config.listen(self._listener)

    # ---- station observer ------------------------------------------------
    def status_changed(self, c):
        if not (self.online and self.registration == "Accepted"):
            return
        hold = self.config.get("MinimumStatusDuration")
        if hold <= 0:
            self._queue_status(c)
        else:
            # §4.9: sent once the status has held this long; a status that
            # changes back meanwhile is not sent at all
            self._status_due[c.id] = time.ticks_add(time.ticks_ms(), hold * 1000)

    def _send_due_statuses(self):
        if not self._status_due:  # called every second: nothing allocated when idle
            return
        now = time.ticks_ms()
        for cid in list(self._status_due):
            if time.ticks_diff(now, self._status_due[cid]) >= 0:
                del self._status_due[cid]
                c = self.station.connectors[cid]
                if self._reported.get(cid) != (c.status, c.error_code):
                    self._queue_status(c)

    def _queue_status(self, c):
        p = {"connectorId": c.id, "errorCode": c.error_code, "status": c.status, "timestamp": clock.iso()}
        if c.info:
            p["info"] = c.info
        self._reported[c.id] = (c.status, c.error_code)
        self._status_due.pop(c.id, None)
        self.outbox.put("StatusNotification", p)
        self.wake.set()

    def transaction_started(self, tx):
        c = self.station.connector(tx.connector_id)
        tx.start_data = c.reading
        tx.last_sample = time.ticks_ms()
        p = {"connectorId": tx.connector_id, "idTag": tx.id_tag, "meterStart": tx.meter_start,
             "timestamp": clock.iso(tx.start_time)}
        if tx.reservation_id is not None:
            p["reservationId"] = tx.reservation_id
        self.outbox.keep.add(tx.local_id)
        self.outbox.put("StartTransaction", p, tx.local_id)
        self.wake.set()

    def transaction_stopped(self, tx):
        p = {"meterStop": tx.meter_stop, "timestamp": clock.iso(tx.stop_time), "reason": tx.stop_reason}
        if tx.stop_id_tag:
            p["idTag"] = tx.stop_id_tag
        # errata 3.16.6: the Begin and End values of every measurand configured
        begin_end = self.config.get("StopTxnSampledData") + [
            m for m in self.config.get("StopTxnAlignedData") if m not in self.config.get("StopTxnSampledData")]
        data = transaction_data(tx, begin_end)
        tx.samples = []
        if data:
            p["transactionData"] = data
        self.outbox.put("StopTransaction", p, tx.local_id)
        self.outbox.keep.discard(tx.local_id)
        self.wake.set()

    async def authorize(self, id_tag):
        # -> idTagInfo (OCPP 1.6 §3.5, §4.1). Online the CSMS decides, unless
        # LocalPreAuthorize lets a valid local list or cache entry start at
        # once; every answer feeds the cache. Offline (or no answer) the
        # station decides: LocalAuthorizeOffline, AllowOfflineTxForUnknownId.
        auth = self.station.auth
        if self.online and self.registration == "Accepted":
            if self.config.get("LocalPreAuthorize"):
                info, where = auth.lookup(id_tag)
                if info and info["status"] == "Accepted":
                    log.info("auth", "%s accepted from the %s (LocalPreAuthorize)" % (id_tag, where))
                    return info
            try:
                answer = await self.rpc.call("Authorize", {"idTag": id_tag}, self.config.get("MessageTimeout"))
                self._learn(id_tag, answer["idTagInfo"])
                return answer["idTagInfo"]
            except (CallError, CallTimeout, NotConnected) as e:
                # §3.5: an error answer is decided like no answer, by the offline rules
                log.warn("auth", "Authorize for %s failed (%s), deciding offline" % (id_tag, _why(e)))
        return auth.offline(id_tag)

    def _learn(self, id_tag, info):
        # An idTagInfo from the CSMS: into the cache, or, when it contradicts
        # the local list, reported on connector 0 as LocalListConflict (§3.5.2).
        if not id_tag or not info or not self.station.auth.learn(id_tag, info):
            return
        log.warn("auth", "the CSMS and the local list disagree about %s: reported as LocalListConflict" % id_tag)
        c = self.station.connectors[0]
        self.outbox.put("StatusNotification", {"connectorId": 0, "errorCode": "LocalListConflict",
                                               "status": c.status, "timestamp": clock.iso()})
        self.wake.set()

    # ---- the CSMS side of boot (§4.2) ------------------------------------
    def _gate(self, action):
        # Rejected: answer nothing. Pending (or no answer yet): answer, but
        # remote start/stop is not allowed.
        if self.registration == "Rejected":
            return False
        if self.registration != "Accepted" and action in ("RemoteStartTransaction", "RemoteStopTransaction"):
            return {"status": "Rejected"}
        return None

    # ---- one connection ----------------------------------------------------
    async def _talk(self, ws):
        try:
            if self.registration != "Accepted":
                await self._boot()
            self._report_update()  # until the CSMS answered it
            self._cert_due = 0  # at each connection, then when due
            # (Re)connected and accepted: tell the CSMS where every connector stands.
            for c in self.station.connectors:
                self._queue_status(c)
            await self._send_loop()
        except asyncio.CancelledError:
            raise
        except NotConnected:
            pass  # the reader side reports the lost link
        except Exception as e:
            log.exc("ocpp", "session failed, reconnecting", e)
            await ws.close()

    def _boot_payload(self):
        p = {"chargePointVendor": self.config.get("ChargePointVendor"),
             "chargePointModel": self.config.get("ChargePointModel"),
             "firmwareVersion": FIRMWARE_VERSION}
        for key in ("ChargePointSerialNumber", "ChargeBoxSerialNumber"):
            v = self.config.get(key)
            if v:
                p[key[0].lower() + key[1:]] = v
        for k, v in self.boot_fields.items():
            if v:
                p[k] = v
        return p

    def _ready(self, e):
        # The queued message e, about to go: a transaction's gets the CSMS's
        # transactionId (KEPT is 0); -> False when it was dropped instead.
        if e.local and e.action != "StartTransaction":
            tx_id = self.outbox.tx_id(e.local)
            if tx_id is None:
                # Its StartTransaction was given up: the CSMS cannot place it.
                log.warn("outbox", "%s of transaction %d dropped: the CSMS never numbered the transaction" % (
                    e.action, e.local))
                self.outbox.pop(e)
                return False
            e.payload["transactionId"] = tx_id
        return True

    def _answered(self, e, answer):
        if e.action == "StartTransaction":
            self.outbox.set_id(e.local, answer["transactionId"])
            self._started(self._live(e.local), answer)
        if e.action in ("StartTransaction", "StopTransaction"):
            self._learn(e.payload.get("idTag"), answer.get("idTagInfo"))

    def _live(self, local):
        # The running Transaction with this local number, or None.
        for c in self.station.connectors:
            if c.transaction and c.transaction.local_id == local:
                return c.transaction
        return None

    def _started(self, tx, answer):
        # tx: the running Transaction, or None when it has ended meanwhile.
        info = answer["idTagInfo"]
        if tx is None:
            log.info("ocpp", "the CSMS numbered an earlier transaction: %d" % answer["transactionId"])
            return
        tx.id = answer["transactionId"]
        self.station.save_transactions()
        log.info("ocpp", "the CSMS numbered the transaction on connector %d: %d" % (tx.connector_id, tx.id))
        if info.get("parentIdTag"):
            tx.parent_id_tag = info["parentIdTag"]
        if info.get("status") != "Accepted":
            log.warn("auth", "the CSMS did not accept %s for the transaction: %s" % (tx.id_tag, info.get("status")))
            self.station.deauthorize(tx, "DeAuthorized")

    # ---- meter values (§4.7) ------------------------------------------------
    async def sample_meters(self):
        # Periodic samples during transactions, and clock-aligned readings.
        while True:
            await asyncio.sleep(1)
            now_ms = time.ticks_ms()
            period = self.config.get("MeterValueSampleInterval") * 1000
            cfg = self.config
            for c in self.station.connectors:
                tx = c.transaction
                if tx and period > 0 and time.ticks_diff(now_ms, tx.last_sample) >= period:
                    tx.last_sample = now_ms
                    self._meter_values(c, tx, cfg.get("MeterValuesSampledData"), "Sample.Periodic")
                    self._keep(c, tx, cfg.get("StopTxnSampledData"), "Sample.Periodic")
            aligned = cfg.get("ClockAlignedDataInterval")
            if aligned > 0 and clock.synced():
                slot = clock.now() // aligned
                if slot != self._last_aligned:
                    first = self._last_aligned == 0
                    self._last_aligned = slot
                    if not first:
                        for c in self.station.connectors:
                            self._meter_values(c, c.transaction, cfg.get("MeterValuesAlignedData"), "Sample.Clock")
                            self._keep(c, c.transaction, cfg.get("StopTxnAlignedData"), "Sample.Clock")
            self._send_due_statuses()
            if self._cert_due is not None and self.online and self.registration == "Accepted" and \
                    clock.synced() and clock.now() >= self._cert_due:
                self._look_at_client_certificate()

    def _look_at_client_certificate(self):
        # Whitepaper A03: the client certificate is renewed a month before it
        # expires. Cheap while nothing is due: the "cpcert" file that
        # ocpp/v16/certsign.py wrote when it installed the certificate (its
        # expiry as a number, the CRC of its DER), no certificate parsed.
        now = clock.now()
        self._cert_due = now + 86400
        rec = self.station.store.load("cpcert")
        if rec is None and self.config.get("SecurityProfile") < 3:
            return  # no client certificate of ours, none in use: nothing loaded
        import certs
        from binascii import crc32
        c = certs.Store(self.station.store.root).client()
        if c is None and rec is None:
            return
        if c and type(rec) is dict and rec.get("crc") == crc32(c[0][0]) and now < (rec.get("due") or 0):
            self._cert_due = rec["due"]
            return
        c = None
        from ocpp.v16 import certsign  # let go again by check()
        try:
            self._cert_due = certsign.check(self)
        except Exception as e:  # never the meter loop's end
            log.exc("certs", "cannot look at the client certificate", e)

    def _meter_values(self, c, tx, measurands, context):
        if c.reading is None or not c.meter_ok or not measurands:
            return  # no fresh reading: nothing stale is ever sent as new
        if tx is None and not (self.online and self.registration == "Accepted"):
            return  # readings outside a transaction are not kept while offline
        values = sampled_values(c.reading, measurands, context)
        if not values:
            return
        p = {"connectorId": c.id, "meterValue": [{"timestamp": clock.iso(c.reading_time), "sampledValue": values}]}
        self.outbox.put("MeterValues", p, tx.local_id if tx else None, context == "Sample.Periodic")
        if tx:  # after the journal write: the line means the reading is kept
            log.info("meter", "connector %d: %d Wh, %d W (%s)" % (
                c.id, c.energy(), c.reading.get("Power.Active.Import", 0), context))
        self.wake.set()

    # ---- after a restart ---------------------------------------------------------
    async def recover(self):
        # Transactions that were running when the power went (or the firmware
        # died) are ended now, after their earlier queued messages: reason
        # PowerLoss (Reboot after a commanded restart), meterStop from the meter.
        store = self.station.store
        reason = "PowerLoss"
        if store.load("restart"):  # written by tasks.clean_stop: it describes this boot only
            reason = "Reboot"
            store.remove("restart")
        lost = self.station.interrupted
        if not lost:
            return
        for _ in range(20):  # give the meters up to 10 s to answer
            if all(self._reading(r) is not None for r in lost):
                break
            await asyncio.sleep_ms(500)
        for r in lost:
            local = r["local"]
            if self.outbox.has("StopTransaction", local):
                continue  # it was ended; only the bookkeeping was cut short
            if r.get("id") is not None and self.outbox.tx_id(local) is None:
                self.outbox.set_id(local, r["id"])
            if self.outbox.tx_id(local) is None and not self.outbox.has("StartTransaction", local):
                p = {"connectorId": r["connector"], "idTag": r["idTag"], "meterStart": r["meterStart"],
                     "timestamp": clock.iso(r["start"])}
                if r.get("reservationId") is not None:
                    p["reservationId"] = r["reservationId"]
                self.outbox.put("StartTransaction", p, local)
            energy = self._reading(r)
            meter_stop = r["meterStart"] if energy is None else max(energy, r["meterStart"])
            log.warn("ocpp", "connector %d: the transaction of %s was interrupted (%s), ending it at %d Wh" % (
                r["connector"], r["idTag"], reason, meter_stop))
            self.outbox.put("StopTransaction", {"meterStop": meter_stop, "timestamp": clock.iso(),
                                                "reason": reason}, local)
        self.station.interrupted = []
        self.station.save_transactions()
        self.wake.set()

    def _reading(self, r):
        c = self.station.connector(r["connector"])
        return c.energy() if c else None

    # ---- TriggerMessage (§5.17) and Reset (§5.14) ---------------------------
    def trigger(self, what, cid):
        # -> (status, after): `after` sends the message once the confirmation
        # is out. cid None: every connector the message applies to.
        cs = self.station.connectors
        if cid is not None and not 0 <= cid < len(cs):
            return "Rejected", None
        if what == "BootNotification":
            if self.registration == "Accepted":
                return "Rejected", None  # errata 3.35: not again once accepted
            return "Accepted", self._boot_now
        if what in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
            job = self._jobs[what == "FirmwareStatusNotification"]
            if job and getattr(job, "request_id", None) is not None:  # a signed update: its own message
                return "Accepted", lambda: self._send_now("SignedFirmwareStatusNotification",
                                                          {"status": job.status, "requestId": job.request_id})
            # errata: Idle when nothing is under way
            return "Accepted", lambda: self._send_now(what, {"status": job.status if job else "Idle"})
        if what == "Heartbeat":
            return "Accepted", self._heartbeat_now
        if what == "StatusNotification":
            return "Accepted", lambda: self._trigger_status(cs if cid is None else [cs[cid]])
        if what == "MeterValues":
            # The latest reading of each connector asked for; connector 0 has no meter of its own.
            ms = [c for c in cs[1:] if cid in (None, c.id) and c.reading is not None]
            return ("Accepted", lambda: self._trigger_meters(ms)) if ms else ("Rejected", None)
        return "NotImplemented", None

    async def _boot_now(self):
        self._boot_not_before = time.ticks_ms()
        self._boot_wake.set()

    async def _send_now(self, action, payload):
        # A triggered message goes straight out (also while Pending, §4.2).
        try:
            return await self.rpc.call(action, payload, self.config.get("MessageTimeout"))
        except (CallError, CallTimeout, NotConnected) as e:
            log.warn("ocpp", "triggered %s failed: %s" % (action, _why(e)))

    async def _heartbeat_now(self):
        answer = await self._send_now("Heartbeat", {})
        csms_time(self.config, answer and answer["currentTime"])

    async def _trigger_status(self, cs):
        for c in cs:
            if self.registration == "Accepted":
                self._queue_status(c)  # in order behind the status changes still queued
                continue
            p = {"connectorId": c.id, "errorCode": c.error_code, "status": c.status, "timestamp": clock.iso()}
            if c.info:
                p["info"] = c.info
            await self._send_now("StatusNotification", p)

    async def _trigger_meters(self, cs):
        # §5.17: the most recent values of the MeterValuesSampledData measurands.
        for c in cs:
            tx = c.transaction
            values = sampled_values(c.reading, self.config.get("MeterValuesSampledData"), "Trigger") or \
                sampled_values(c.reading, ("Energy.Active.Import.Register",), "Trigger")
            p = {"connectorId": c.id, "meterValue": [{"timestamp": clock.iso(c.reading_time), "sampledValue": values}]}
            if self.registration == "Accepted":
                self.outbox.put("MeterValues", p, tx.local_id if tx else None)
                self.wake.set()
            else:
                await self._send_now("MeterValues", p)

    async def reset(self, hard):
        # §5.14, after the confirmation: transactions end with SoftReset / HardReset.
        log.info("ocpp", "%s reset asked by the CSMS" % ("hard" if hard else "soft"))
        await self._restart(hard, "HardReset" if hard else "SoftReset")

    # ---- Firmware update and diagnostics (§5.19, §5.9) ----------------------
    def maintenance(self, firmware):
        # The FirmwareUpdate (True) or DiagnosticsUpload job, made on first use:
        # maintenance.py is not imported before a CSMS asks for one.
        job = self._jobs[firmware]
        if job is None:
            import maintenance
            if firmware:
                job = maintenance.FirmwareUpdate(self.station, self._firmware_status, self.tls,
                                                 self._restart_for_update)
            else:
                job = maintenance.DiagnosticsUpload(self.config.get("ChargePointId"),
                                                    self._notifier("DiagnosticsStatusNotification"), self.tls)
            self._jobs[firmware] = job
        return job

    def _report_update(self):
        # The boot stage's word on the update installed before this boot
        # (Installed, or InstallationFailed after a rollback), after the
        # BootNotification of the version that runs now (§4.5), at each
        # connection until the CSMS answers it (Session._update_reported); for a
        # signed update with its requestId (whitepaper L01.FR.10, kept in "fwsigned").
        done = slots.outcome()
        if done:
            log.info("update", "%s: %s" % done)
            store = self.station.store
            signed = store.load("fwsigned")
            rid = signed.get("id") if type(signed) is dict else None
            self._firmware_status(done[0], rid)
            if rid is not None and done[0] != "Installed":  # L01.FR.29: the last status, for a trigger
                job = self.maintenance(True)
                job.status, job.request_id = done[0], rid

    def _firmware_status(self, status, request_id=None):
        # FirmwareStatusNotification, or for a signed update (SignedUpdateFirmware)
        # SignedFirmwareStatusNotification with its requestId.
        if request_id is None:
            self.outbox.put("FirmwareStatusNotification", {"status": status})
        else:
            self.outbox.put("SignedFirmwareStatusNotification", {"status": status, "requestId": request_id})
        self.wake.set()

    def _notifier(self, action):
        def notify(status):
            self.outbox.put(action, {"status": status})
            self.wake.set()
        return notify

    # ---- CP-initiated DataTransfer ------------------------------------------
    async def data_transfer(self, vendor_id, message_id=None, data=None):
        p = {"vendorId": vendor_id}
        if message_id:
            p["messageId"] = message_id
        if data is not None:
            p["data"] = data
        return await self.rpc.call("DataTransfer", p)
