"""One station, either protocol: OcppVersion orders the subprotocols offered in the
handshake, the CSMS's choice decides which package runs for that connection (the
other version's modules are not in RAM), and queued messages are never replayed on
a session of the other version: they wait in flash for one of their own."""
import scenario
from dev_csms import DevCSMS

TAG = "SWITCH01"


def modules(fw):
    fw.send("modules")
    return fw.wait_line(r"console: modules: ").split("modules: ", 1)[1].split()


def boots(csms, proto):
    return csms.calls("BootNotification", proto=proto)


def test_the_csms_choice_runs_and_only_that_package_is_loaded(firmware_factory):
    csms = DevCSMS(protocols=("ocpp2.0.1", "ocpp1.6"))  # this CSMS prefers 2.0.1
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms, ocpp="1.6,2.0.1")  # the station prefers 1.6: its package is loaded at boot
        fw.start()
        fw.wait_line(r"the CSMS chose ocpp2.0.1: switching from ocpp1.6")
        fw.wait_line(r"link: connected \(ocpp2.0.1\)")
        csms.wait_for(lambda: boots(csms, "ocpp2.0.1"), 15, "a 2.0.1 BootNotification")
        assert boots(csms, "ocpp1.6") == []
        assert csms.offered[0] == ["ocpp1.6", "ocpp2.0.1"]  # in the station's order
        loaded = modules(fw)
        assert "ocpp.v201.chargepoint" in loaded and not [m for m in loaded if m.startswith("ocpp.v16")], loaded
        assert csms.violations == []

        # The CSMS now prefers 1.6: at the next connection the station switches back.
        csms.protocols = ("ocpp1.6", "ocpp2.0.1")
        csms.restart()
        fw.wait_line(r"the CSMS chose ocpp1.6: switching from ocpp2.0.1", 40)
        csms.wait_for(lambda: boots(csms, "ocpp1.6"), 15, "a 1.6 BootNotification")
        loaded = modules(fw)
        assert "ocpp.v16.chargepoint" in loaded and not [m for m in loaded if m.startswith("ocpp.v201")], loaded
        assert scenario.firmware_failure(fw) is None
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_an_offline_transaction_waits_for_a_session_of_its_own_version(firmware_factory):
    csms = DevCSMS(protocols=("ocpp2.0.1",))
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms, ocpp="2.0.1,1.6")
        fw.start()
        fw.wait_line(r"accepted this charging station")
        csms.wait_for(lambda: csms.calls("StatusNotification", proto="ocpp2.0.1"), 15, "2.0.1 statuses")
        scenario.settle(fw, [("AllowOfflineTxForUnknownId", "true")])  # the card is unknown offline
        csms.stop_thread()
        fw.wait_line(r"connection to the CSMS lost")
        # A whole session while the CSMS is away: its TransactionEvents are queued for 2.0.1.
        fw.send("plug 1")
        fw.send("card 1 " + TAG)
        fw.wait_line(r"transaction started")
        fw.send("card 1 " + TAG)
        fw.wait_line(r"transaction stopped")
        fw.send("unplug 1")

        # The CSMS comes back speaking 1.6 only: nothing of that transaction goes to it.
        csms.protocols = ("ocpp1.6",)
        csms.start_in_thread(port=csms.port)
        fw.wait_line(r"the CSMS chose ocpp1.6: switching from ocpp2.0.1", 60)
        csms.wait_for(lambda: csms.calls("StatusNotification", proto="ocpp1.6"), 15, "1.6 statuses")
        assert csms.calls("StartTransaction") == [] and csms.calls("TransactionEvent", proto="ocpp1.6") == []
        assert csms.transactions201 == {}

        # Back to 2.0.1: the queued events are delivered, in order, as one transaction.
        csms.protocols = ("ocpp2.0.1",)
        csms.restart()
        fw.wait_line(r"the CSMS chose ocpp2.0.1: switching from ocpp1.6", 60)
        csms.wait_for(lambda: any(e[-1]["eventType"] == "Ended" for e in csms.transactions201.values()), 20,
                      "the Ended event after the switch back")
        (events,) = csms.transactions201.values()
        assert [e["seqNo"] for e in events] == list(range(len(events)))
        assert events[0]["eventType"] == "Started" and all(e.get("offline") for e in events)
        assert csms.seq_gaps == [] and csms.violations == []
        assert scenario.firmware_failure(fw) is None
    finally:
        if csms.loop.is_running():
            csms.stop_thread()


def test_a_transaction_across_a_switch_never_takes_the_other_versions_number(firmware_factory):
    # A 2.0.1 transaction's last seqNo is no 1.6 transactionId: when the CSMS switches the station
    # to 1.6 mid-transaction, its end is not sent as a StopTransaction of some other transaction.
    csms = DevCSMS(protocols=("ocpp2.0.1",))
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms, ocpp="2.0.1,1.6")
        fw.start()
        fw.wait_line(r"accepted this charging station")
        fw.send("plug 1")
        fw.send("card 1 " + TAG)
        csms.wait_for(lambda: len(csms.calls("TransactionEvent")) >= 2, 15, "Started and an Updated")
        csms.protocols = ("ocpp1.6",)
        csms.restart()
        fw.wait_line(r"the CSMS chose ocpp1.6: switching from ocpp2.0.1", 60)
        csms.wait_for(lambda: csms.calls("StatusNotification", proto="ocpp1.6"), 15, "1.6 statuses")
        fw.send("card 1 " + TAG)
        fw.wait_line(r"StopTransaction of transaction \d+ dropped: the CSMS never numbered the transaction")
        assert csms.calls("StopTransaction") == [] and csms.transactions == {}
        assert scenario.firmware_failure(fw) is None and csms.violations == []
    finally:
        csms.stop_thread()
