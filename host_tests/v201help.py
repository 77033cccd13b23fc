"""Helpers of the OCPP 2.0.1 charge point tests (host_tests/test_v201_*.py): the boot, and
readers of what the CSMS received. The firmware speaks 2.0.1 with firmware_factory(..., ocpp="2.0.1")."""
TAG = "04A2B3C4D5"
CP = "CP001"


def start(fw, csms, settings=(), statuses=2):
    """Boot to Accepted, wait for every EVSE's StatusNotification, then set keys at the console."""
    fw.start()
    fw.wait_line(r"accepted this charging station")
    csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= statuses, 10, "boot statuses")
    for key, value in settings:
        fw.send("set %s %s" % (key, value))
        fw.wait_line(r"set %s: Accepted" % key)


def events(csms, txid=None):
    """TransactionEvent payloads received, in order (of one transaction)."""
    return [p for _, _, p in csms.calls("TransactionEvent")
            if txid is None or p["transactionInfo"]["transactionId"] == txid]


def statuses(csms, evse=None):
    return [(p["evseId"], p["connectorStatus"]) for _, _, p in csms.calls("StatusNotification")
            if evse in (None, p["evseId"])]


def values(ev, context=None):
    """{measurand: value} of the first meterValue of an event (of that context)."""
    out = {}
    for mv in ev.get("meterValue", ()):
        for s in mv["sampledValue"]:
            if context in (None, s.get("context")) and "phase" not in s:
                out.setdefault(s.get("measurand", "Energy.Active.Import.Register"), s["value"])
    return out


def wait_event(csms, pred, what, timeout=20):
    return csms.wait_for(lambda: next((e for e in events(csms) if pred(e)), None), timeout, what)
