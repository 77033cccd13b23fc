# OCPP 2.0.1 Reset (B11, B12) and the end of the transactions a power cut or
# a restart interrupted. Seldom run: imported for the call and let go again
# (handlers.rare).
import asyncio
import clock
import log
from ocpp.v201.chargepoint import CARD, ENERGY, STOPS, meter_value


def boot_reason(store):
    # BootNotification.reason (B01): what the restart record of tasks.clean_stop
    # (read at the ChargePoint's construction, before recover() removes it) or
    # the boot stage says.
    import slots
    r = store.load("restart") if store else None
    by = r.get("by", "") if type(r) is dict else ""
    if "update" in by or slots.outcome():
        return "FirmwareUpdate"
    if "OnIdle" in by:
        return "ScheduledReset"
    if "OCPP" in by:
        return "RemoteReset"
    if by:
        return "LocalReset"  # the installer's cfg.restart()
    try:
        import machine
        if machine.reset_cause() == machine.WDT_RESET:
            return "Watchdog"
    except (ImportError, AttributeError):
        pass
    return "PowerUp"


def reset_request(cp, kind, evse_id):
    # -> (status, after). One controller runs every EVSE: an EVSE cannot
    # restart on its own (B11.FR.09 / B12.FR.09: Rejected). OnIdle waits for
    # the running transactions to end (Scheduled, B12.FR.01); Immediate ends
    # them (ImmediateReset, B12.FR.02) and restarts.
    if evse_id:
        log.info("ocpp", "Reset of EVSE %d refused: EVSEs cannot be reset one by one" % evse_id)
        return "Rejected", None
    if kind == "OnIdle" and any(c.transaction for c in cp.station.connectors):
        cp.pending_reset = True
        log.info("ocpp", "Reset OnIdle: the restart follows the end of the running transactions")
        return "Scheduled", None
    return "Accepted", lambda: reset(cp, kind == "Immediate")


async def reset(cp, immediate, scheduled=False):
    # After the response: running transactions end and their events are given
    # MessageTimeout seconds to reach the CSMS (they stay queued in flash
    # anyway), then the link is closed and the firmware restarts. The restart
    # record (tasks.clean_stop) gives the next boot its reason: RemoteReset, or
    # ScheduledReset for an OnIdle reset that waited.
    log.info("ocpp", "%s reset asked by the CSMS" % ("scheduled" if scheduled else "immediate" if immediate
                                                     else "idle"))
    await cp._restart(True, "HardReset", "OCPP Reset (%s)" % ("OnIdle" if scheduled else "Immediate"))


def _reading(cp, r):
    c = cp.station.connector(r["connector"])
    return c.energy() if c else None


async def recover(cp, reason):
    # Transactions that were running when the power went (or the firmware
    # died) end now, after their earlier queued events: the same
    # transactionId, the next seqNo, stoppedReason PowerLoss (Reboot after a
    # commanded restart), the energy register at the end.
    lost = cp.station.interrupted
    box = cp.outbox
    for _ in range(20):  # give the meters up to 10 s to answer
        if all(_reading(cp, r) is not None for r in lost):
            break
        await asyncio.sleep_ms(500)
    stopped, trigger = STOPS[reason]
    for r in lost:
        local = r["local"]
        if box.has("StopTransaction", local):  # its Ended is queued
            box.keep.discard(local)
            continue  # it was ended; only the bookkeeping was cut short
        uid = r.get("uid")
        cid = r["connector"]
        c = cp.station.connector(cid)
        if uid is None or box.tx_id(local) is None:
            # never told (cut before its Started was written, or a transaction
            # of firmware without 2.0.1): the CSMS learns of it with its end
            if uid is None:
                import os
                import binascii
                uid = "%s-%d" % (binascii.hexlify(os.urandom(4)).decode(), local)
            more = {"evse": {"id": cid, "connectorId": 1}, "idToken": {"idToken": r["idTag"], "type": CARD},
                    "meterValue": meter_value(r["start"], {ENERGY: r["meterStart"]}, (ENERGY,), "Transaction.Begin")}
            if r.get("reservationId") is not None:
                more["reservationId"] = r["reservationId"]
            cp.event(local, uid, "Started", "Authorized", r["start"], {"chargingState": "EVConnected"}, more)
        energy = _reading(cp, r)
        end = max(energy, r["meterStart"]) if energy is not None else r["meterStart"]
        log.warn("ocpp", "EVSE %d: the transaction %s of %s was interrupted (%s), ending it at %d Wh" % (
            cid, uid, r["idTag"], reason, end))
        info = {"chargingState": "EVConnected" if c and c.plugged else "Idle", "stoppedReason": stopped}
        now = clock.now()
        cp.event(local, uid, "Ended", trigger, now, info,
                 {"meterValue": meter_value(now, {ENERGY: end}, (ENERGY,), "Transaction.End")})
        box.keep.discard(local)
    cp.station.interrupted = []
    cp.station.save_transactions()
    cp.wake.set()
