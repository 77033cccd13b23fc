"""OCPP 2.0.1 transactions across a CSMS outage, wholly offline, across power cuts, and
retried when the CSMS fails to process them (E04, E12, E13; part 6 TC_E_40..45)."""
import time

from conftest import free_port
from dev_csms import DevCSMS
from v201help import TAG, events, start, statuses, wait_event

ENERGY = "Energy.Active.Import.Register"


def csms201(port=0, **kw):
    c = DevCSMS(heartbeat_interval=300, protocols=("ocpp2.0.1",), **kw)
    c.start_in_thread(port=port)
    return c


def contiguous(evs):
    return [e["seqNo"] for e in evs] == list(range(len(evs)))


def test_transaction_across_a_csms_outage(firmware_factory, tmp_path):
    csms = csms201()
    try:
        fw = firmware_factory(csms, ocpp="2.0.1")
        start(fw, csms, [("MeterValueSampleInterval", 1), ("ClockAlignedDataInterval", 0)])
        fw.send("load 1 16")
        fw.send("plug 1")
        fw.send("card 1 " + TAG)
        started = wait_event(csms, lambda e: e["eventType"] == "Started", "Started")
        txid = started["transactionInfo"]["transactionId"]
        wait_event(csms, lambda e: e["triggerReason"] == "MeterValuePeriodic", "a periodic value")
        csms.stop_thread()  # the CSMS goes away for a while
        fw.wait_line(r"connection to the CSMS lost")
        for _ in range(3):
            fw.wait_line(r"meter: EVSE 1: \d+ Wh")
        fw.send("card 1 " + TAG)  # LocalAuthorizeOffline: the same card ends it
        fw.wait_line(r"transaction %s ended" % txid)
        fw.send("unplug 1")
        online = len(events(csms, txid))
        csms.start_in_thread(port=csms.port)  # and comes back on the same port
        csms.wait_for(lambda: events(csms, txid)[-1:] and events(csms, txid)[-1]["eventType"] == "Ended", 40, "Ended")
        evs = events(csms, txid)
        assert contiguous(evs) and evs[0] is started
        assert all("offline" not in e for e in evs[:online])
        late = evs[online:]
        assert len(late) >= 3 and all(e.get("offline") is True for e in late)
        ended = evs[-1]
        assert ended["transactionInfo"]["stoppedReason"] == "Local"
        energies = [mv["sampledValue"][0]["value"] for e in evs for mv in e.get("meterValue", ())
                    if mv["sampledValue"][0].get("context") == "Sample.Periodic"]
        assert energies == sorted(energies)
        # after the outage the connector's new state is reported (B04)
        csms.wait_for(lambda: statuses(csms, 1)[-1:] == [(1, "Available")], 10, "Available")
        assert csms.seq_gaps == [] and csms.duplicates["TransactionEvent"] == 0
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_wholly_offline_sessions_across_a_power_cut(firmware_factory, tmp_path):
    port = free_port()
    fw = firmware_factory("ws://127.0.0.1:%d" % port, ocpp="2.0.1")
    fw.start()
    fw.wait_line(r"cannot connect")
    for cmd in ("set ClockAlignedDataInterval 0", "set MeterValueSampleInterval 1",
                "set AllowOfflineTxForUnknownId true", "load 1 16", "plug 1", "card 1 " + TAG):
        fw.send(cmd)
    fw.wait_line(r"transaction \S+ started")
    for _ in range(3):
        fw.wait_line(r"meter: EVSE 1: \d+ Wh")
    fw.kill()  # the power goes
    fw.start()  # still offline: the interrupted session is ended locally
    fw.wait_line(r"interrupted \(PowerLoss\)", 20)
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)  # a second, complete offline session
    fw.wait_line(r"transaction \S+ started")
    fw.wait_line(r"meter: EVSE 1: \d+ Wh")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"transaction \S+ ended")
    csms = csms201(port)
    try:
        csms.wait_for(lambda: len([e for e in events(csms) if e["eventType"] == "Ended"]) == 2, 40, "both Ended")
        evs = events(csms)
        ids = []
        for e in evs:
            t = e["transactionInfo"]["transactionId"]
            if t not in ids:
                ids.append(t)
        assert len(ids) == 2  # one transactionId each, delivered one after the other
        first, second = events(csms, ids[0]), events(csms, ids[1])
        assert evs == first + second
        for tx in (first, second):
            assert contiguous(tx) and tx[0]["eventType"] == "Started" and tx[-1]["eventType"] == "Ended"
            assert all(e.get("offline") is True for e in tx)
        assert first[-1]["transactionInfo"]["stoppedReason"] == "PowerLoss"
        assert first[-1]["triggerReason"] == "AbnormalCondition"
        assert second[-1]["transactionInfo"]["stoppedReason"] == "Local"
        begin2 = second[0]["meterValue"][0]["sampledValue"][0]["value"]
        assert begin2 >= first[-1]["meterValue"][-1]["sampledValue"][0]["value"]
        assert csms.seq_gaps == [] and csms.duplicates["TransactionEvent"] == 0 and csms.orphans == []
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_power_cut_after_every_event_was_delivered(firmware_factory, tmp_path):
    # The last seqNo given survives the cut in the journal ("T"), though nothing is queued.
    csms = csms201()
    try:
        fw = firmware_factory(csms, ocpp="2.0.1")
        start(fw, csms, [("MeterValueSampleInterval", 0), ("ClockAlignedDataInterval", 0)])
        fw.send("load 2 16")
        fw.send("plug 2")
        fw.send("card 2 " + TAG)
        started = wait_event(csms, lambda e: e["eventType"] == "Started", "Started")
        txid = started["transactionInfo"]["transactionId"]
        wait_event(csms, lambda e: e["transactionInfo"].get("chargingState") == "Charging", "Charging")
        time.sleep(1)
        n = len(events(csms, txid))
        fw.kill()
        fw.start()
        fw.wait_line(r"interrupted \(PowerLoss\)", 20)
        ended = wait_event(csms, lambda e: e["eventType"] == "Ended", "Ended")
        evs = events(csms, txid)
        assert contiguous(evs) and len(evs) == n + 1 and evs[-1] is ended
        assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
        assert ended["offline"] is True  # it is told after the fact
        # and a second restart does not end it again
        fw.stop()
        fw.start()
        fw.wait_line(r"accepted this charging station", 20)
        time.sleep(1)
        # (the Ended may come twice if the stop cut its answer short: the CSMS knows it by its seqNo)
        assert len([e for e in csms.transactions201[txid] if e["eventType"] == "Ended"]) == 1
        assert csms.calls("BootNotification")[-1][2]["reason"] == "PowerUp"
        assert csms.violations == [] and csms.seq_gaps == []
    finally:
        csms.stop_thread()


def test_failed_event_is_sent_again_then_given_up(firmware_factory, tmp_path):
    csms = csms201()
    try:
        fw = firmware_factory(csms, ocpp="2.0.1")
        start(fw, csms, [("MeterValueSampleInterval", 0), ("ClockAlignedDataInterval", 0),
                         ("TransactionMessageRetryInterval", 1), ("TransactionMessageAttempts", 3)])
        csms.errors["TransactionEvent"] = ("InternalError", 1)
        fw.send("plug 1")
        fw.send("card 1 " + TAG)
        fw.wait_line(r"TransactionEvent of transaction \d+ failed .*again in 1 s")
        started = wait_event(csms, lambda e: e["eventType"] == "Started", "Started (second attempt)")
        assert started["seqNo"] == 0
        csms.errors["TransactionEvent"] = ("InternalError", 3)
        fw.send("card 1 " + TAG)
        fw.wait_line(r"TransactionEvent of transaction \d+ dropped after 3 attempts", 20)
        assert csms.violations == []
    finally:
        csms.stop_thread()
