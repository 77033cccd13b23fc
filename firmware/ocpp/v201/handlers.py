# OCPP 2.0.1 operations initiated by the CSMS: action name -> handler.
# A handler gets the checked payload and returns the response payload, or
# (response, after) where `after` is a coroutine function run once the
# response is out. Handlers only call the station model and configuration;
# the use case numbers are those of OCPP 2.0.1 part 2 (quoted by part 6).
import log
from ocpp import session


def rare(module, fn, *args):
    # fn(*args) of ocpp/v201/<module>.py, code seldom run (TriggerMessage,
    # Reset, the recovery after a power cut, UpdateFirmware): imported for the
    # call and let go again, so that it takes no RAM the rest of the time.
    import sys
    name = "ocpp.v201." + module
    m = __import__(name, None, None, (fn,), 0)
    try:
        return getattr(m, fn)(*args)
    finally:
        del sys.modules[name]
        try:
            delattr(sys.modules["ocpp.v201"], module)
        except AttributeError:
            pass


def _connector(station, evse):
    # EVSE {id, connectorId?} -> the station's connector, or None (EVSE n =
    # connector n; each EVSE has one connector, number 1)
    c = station.connector(evse["id"])
    return c if c and evse.get("connectorId", 1) == 1 else None


def table(cp):
    config = cp.config
    station = cp.station

    # ---- F01-F04 remote start and stop ---------------------------------------------
    def request_start(p):
        # Accepted when an EVSE can take it; the transaction starts once a
        # vehicle is plugged in (TxStartPoint PowerPathClosed), its first event
        # with triggerReason RemoteStart and the remoteStartId (F01.FR.xx).
        tok = p["idToken"]
        if p.get("chargingProfile"):  # smart charging is not part of this 2.0.1 package
            log.warn("ocpp", "remote start refused: a charging profile with it cannot be followed")
            return {"status": "Rejected"}
        c = station.remote_connector(p.get("evseId"), tok["idToken"])
        if c is None:
            return {"status": "Rejected"}
        cp._remote[c.id] = [tok["idToken"], tok["type"], p["remoteStartId"]]
        return {"status": "Accepted"}, lambda: station.remote_start(
            c, tok["idToken"], config.get("AuthorizeRemoteTxRequests"))

    def request_stop(p):
        # F03: Rejected for a transaction we do not know (or one already ended)
        for c in station.connectors:
            if c.transaction and c.transaction.uid == p["transactionId"]:
                async def stop():
                    station.stop_transaction(c, "Remote")
                return {"status": "Accepted"}, stop
        return {"status": "Rejected"}

    def transaction_status(p):
        # E14: are messages of this transaction (of any, without an id) still
        # queued, and is it still running? Our transactionId ends in our local
        # transaction number (station.Transaction.uid).
        box = cp.outbox
        tid = p.get("transactionId")
        if tid is None:
            return {"messagesInQueue": box.pending_tx() > 0}
        ongoing = False
        local = None
        for c in station.connectors:
            tx = c.transaction
            if tx and tx.uid == tid:
                ongoing, local = True, tx.local_id
        if local is None:
            try:
                local = int(tid[tid.rindex("-") + 1:])
            except ValueError:
                pass
        return {"ongoingIndicator": ongoing, "messagesInQueue": local is not None and box.queued(local)}

    # ---- G03, G04 ChangeAvailability ------------------------------------------------
    def change_availability(p):
        # Scheduled while a transaction runs on the EVSE(s); stored, it holds across restarts
        evse = p.get("evse")
        cid = 0
        if evse and evse["id"]:
            c = _connector(station, evse)
            if c is None:
                return {"status": "Rejected"}
            cid = c.id
        return {"status": station.change_availability(cid, p["operationalStatus"] == "Operative")}

    # ---- F05 UnlockConnector --------------------------------------------------------
    def unlock_connector(p):
        c = _connector(station, {"id": p["evseId"], "connectorId": p["connectorId"]})
        if c is None:
            return {"status": "UnknownConnector"}
        if c.transaction:  # F05.FR.02: not while an authorized transaction runs
            return {"status": "OngoingAuthorizedTransaction"}
        ok = station.unlock(c.id, "UnlockCommand")
        return {"status": "Unlocked" if ok else "UnlockFailed"}  # None: no lock to open

    # ---- B11, B12 Reset (restart.py) -------------------------------------------------
    def reset(p):
        status, after = rare("restart", "reset_request", cp, p["type"], p.get("evseId"))
        return ({"status": status}, after) if after else {"status": status}

    # ---- C11 ClearCache -------------------------------------------------------------
    def clear_cache(p):
        # C11.FR.04 (TC_C_38): Rejected while the cache is disabled (AuthCacheCtrlr.Enabled)
        if not config.get("AuthorizationCacheEnabled"):
            return {"status": "Rejected"}
        station.auth.cache.clear()
        return {"status": "Accepted"}

    return {
        "DataTransfer": session.data_transfer,
        "RequestStartTransaction": request_start,
        "RequestStopTransaction": request_stop,
        "GetTransactionStatus": transaction_status,
        "ChangeAvailability": change_availability,
        "UnlockConnector": unlock_connector,
        "Reset": reset,
        "ClearCache": clear_cache,
        # seldom used: their code is imported for the call and let go again
        "TriggerMessage": lambda p: rare("trigger", "trigger", cp, p),  # F06
        "UpdateFirmware": lambda p: rare("firmware", "update_firmware", cp, p),  # L01
        # B05-B07 and B08: the device model ([devmodel]), imported at the first such CALL
        "GetVariables": _on_demand(cp, "devmodel", "get_variables"),
        "SetVariables": _on_demand(cp, "devmodel", "set_variables"),
        "GetBaseReport": _on_demand(cp, "devmodel", "get_base_report"),  # (reports.py, imported by it)
        "GetReport": _on_demand(cp, "devmodel", "get_report"),
    }


def _on_demand(cp, module, name):
    # A handler whose code lies in ocpp/v201/<module>.py: imported at its first call.
    def handler(p):
        m = __import__("ocpp.v201." + module, None, None, (name,), 0)
        return getattr(m, name)(cp, p)
    return handler
