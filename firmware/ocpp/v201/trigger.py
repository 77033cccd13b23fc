# OCPP 2.0.1 TriggerMessage (F06). Seldom run: imported for the call and let
# go again (handlers.rare); the message goes out once the response is.
import clock
import log
from ocpp.rpc import CallError, CallTimeout, NotConnected
from ocpp.session import csms_time
from ocpp.v201.chargepoint import ENERGY, connector_status, meter_value


def trigger(cp, p):
    # TriggerMessage handler: the response first, then the requested message
    what = p["requestedMessage"]
    status, after = _trigger(cp, what, p.get("evse"))
    log.info("ocpp", "CSMS asks for %s: %s" % (what, status))
    return ({"status": status}, after) if after else {"status": status}


def _trigger(cp, what, evse):
    # -> (status, after). evse None: every EVSE the message applies to (F06.FR.11).
    cs = cp.station.connectors
    cid = evse["id"] if evse else None
    if cid is not None and not (0 < cid < len(cs) and evse.get("connectorId", 1) == 1):
        return "Rejected", None
    if what == "BootNotification":
        if cp.registration == "Accepted":
            return "Rejected", None  # F06.FR.17: not again once accepted
        return "Accepted", cp._boot_now
    if what == "Heartbeat":
        return "Accepted", lambda: _heartbeat(cp)
    if what == "StatusNotification":
        return "Accepted", lambda: _statuses(cp, [c for c in cs[1:] if cid in (None, c.id)])
    if what == "MeterValues":
        ms = [c for c in cs[1:] if cid in (None, c.id) and c.reading is not None]
        return ("Accepted", lambda: _meters(cp, ms)) if ms else ("Rejected", None)
    if what == "TransactionEvent":
        ts = [c for c in cs[1:] if cid in (None, c.id) and c.transaction and c.id in cp.states]
        return ("Accepted", lambda: _transactions(cp, ts)) if ts else ("Rejected", None)
    if what == "FirmwareStatusNotification":
        job = cp.fw_job
        p = {"status": job.status if job else "Idle"}  # L01.FR.25: Idle when nothing is under way
        if p["status"] != "Idle" and cp.fw_request is not None:
            p["requestId"] = cp.fw_request
        return "Accepted", lambda: _send(cp, what, p)
    if what == "LogStatusNotification":
        return "Accepted", lambda: _send(cp, what, {"status": "Idle"})  # this package uploads no logs
    return "NotImplemented", None


async def _send(cp, action, payload):
    # A triggered message goes straight out (also while Pending, B02.FR.04).
    try:
        return await cp.rpc.call(action, payload, cp.config.get("MessageTimeout"))
    except (CallError, CallTimeout, NotConnected) as e:
        log.warn("ocpp", "triggered %s failed: %s" % (action, e.code if isinstance(e, CallError) else "no answer"))


async def _heartbeat(cp):
    answer = await _send(cp, "Heartbeat", {})
    csms_time(cp.config, answer and answer["currentTime"])


async def _statuses(cp, cs):
    for c in cs:
        if cp.registration == "Accepted":
            cp.queue_status(c)  # in order behind the status changes still queued
        else:
            await _send(cp, "StatusNotification", {"timestamp": clock.iso(), "connectorStatus": connector_status(
                c.status), "evseId": c.id, "connectorId": 1})


def _values(cp, c):
    # F06.FR.06: the latest values of the TxUpdatedMeasurands, context Trigger
    return meter_value(c.reading_time, c.reading, cp.config.get("MeterValuesSampledData"), "Trigger") or \
        meter_value(c.reading_time, c.reading, (ENERGY,), "Trigger")


async def _meters(cp, cs):
    for c in cs:
        p = {"evseId": c.id, "meterValue": _values(cp, c)}
        if cp.registration == "Accepted":
            cp.outbox.put("MeterValues", p)
            cp.wake.set()
        else:
            await _send(cp, "MeterValues", p)


async def _transactions(cp, cs):
    # F06.FR.07: an Updated event with triggerReason Trigger, the chargingState and the latest values
    for c in cs:
        tx = c.transaction
        if tx:
            more = {"meterValue": _values(cp, c)} if c.reading is not None else None
            cp.event(tx.local_id, tx.uid, "Updated", "Trigger", clock.now(), {"chargingState": cp.charging_state(c)},
                     more)
