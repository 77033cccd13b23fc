"""Transaction messages survive network loss, process kills and torn writes."""
import re

from conftest import ROOT, run_mp, free_port
from dev_csms import DevCSMS

TAG = "04A2B3C4D5"


def energies(csms, tx_id):
    return [int(s["value"]) for mv in csms.transactions[tx_id]["meterValues"] for s in mv["sampled_value"]
            if s.get("measurand") == "Energy.Active.Import.Register"]


def test_killed_mid_transaction_ends_with_power_loss_after_restart(csms, firmware_factory):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    for cmd in ("set ClockAlignedDataInterval 0", "set MeterValueSampleInterval 1", "load 1 16", "plug 1",
                "card 1 " + TAG):
        fw.send(cmd)
    csms.wait_for(lambda: csms.transactions.get(1, {}).get("meterValues", [])[1:], 15, "meter values")
    fw.kill()  # the power goes
    before = energies(csms, 1)
    fw.start()  # and comes back, same flash
    fw.wait_line(r"transaction of %s was interrupted \(PowerLoss\)" % TAG, 20)
    csms.wait_for(lambda: "meterStop" in csms.transactions[1], 20, "StopTransaction")
    tx = csms.transactions[1]
    assert tx["reason"] == "PowerLoss"
    assert tx["meterStop"] >= max(before) and len(csms.transactions) == 1
    assert csms.violations == []
    # A second restart does not end it again (once the firmware has the answer: stopped before
    # it, the StopTransaction would rightly go again).
    stop_id = csms.calls("StopTransaction")[0][0]
    fw.wait_line(r'<< \[3, ?"%s"' % re.escape(stop_id), 10)
    fw.stop()
    fw.start()
    fw.wait_line(r"accepted this charge point", 20)
    csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= 8, 10, "statuses")
    assert len(csms.calls("StopTransaction")) == 1


def test_offline_session_survives_a_restart_and_is_delivered_in_order(firmware_factory):
    port = free_port()
    fw = firmware_factory("ws://127.0.0.1:%d" % port)
    fw.start()
    fw.wait_line(r"cannot connect")
    for cmd in ("set ClockAlignedDataInterval 0", "set MeterValueSampleInterval 1",
                "set AllowOfflineTxForUnknownId true", "load 1 16", "plug 1", "card 1 " + TAG):
        fw.send(cmd)
    fw.wait_line(r"transaction started")
    for _ in range(3):
        fw.wait_line(r"meter: connector 1: \d+ Wh")
    fw.kill()
    fw.start()  # still offline; the interrupted session is ended locally
    fw.wait_line(r"interrupted \(PowerLoss\)", 20)
    fw.send("load 1 16")  # the simulated car is still there after the restart
    fw.send("plug 1")
    fw.send("card 1 " + TAG)  # a second, complete offline session
    fw.wait_line(r"transaction started")
    fw.wait_line(r"meter: connector 1: \d+ Wh")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"transaction stopped")
    csms = DevCSMS()
    csms.start_in_thread(port=port)
    try:
        csms.wait_for(lambda: len(csms.calls("StopTransaction")) == 2, 40, "both StopTransactions")
        acts = [a for a in csms.actions() if a in ("StartTransaction", "StopTransaction", "MeterValues")]
        # Session 1: Start, its samples, Stop(PowerLoss); session 2 after it.
        assert acts[0] == "StartTransaction" and acts.count("StartTransaction") == 2
        first_stop = acts.index("StopTransaction")
        assert acts[first_stop + 1] == "StartTransaction" and acts[-1] == "StopTransaction"
        assert acts[1:first_stop] == ["MeterValues"] * (first_stop - 1) and first_stop >= 4
        for tx_id in (1, 2):
            tx = csms.transactions[tx_id]
            assert tx["meterStop"] >= tx["meterStart"]
            assert all(mv_ok for mv_ok in [e >= tx["meterStart"] for e in energies(csms, tx_id)])
        assert csms.transactions[1]["reason"] == "PowerLoss" and csms.transactions[2]["reason"] == "Local"
        assert csms.transactions[2]["meterStart"] >= csms.transactions[1]["meterStop"]
        # Every MeterValues went out with the transactionId the CSMS gave.
        for _, _, mv in csms.calls("MeterValues"):
            assert mv["transactionId"] in (1, 2)
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_torn_journal_tail_is_discarded_and_earlier_entries_kept(tmp_path):
    out = run_mp(ROOT / "host_tests" / "mp" / "outbox_torn.py", str(tmp_path))
    assert "after restart: 3 queued" in out, out
    assert "torn write" in out
    assert "order ok" in out and "thinned ok" in out, out


def test_installer_restart_ends_a_running_transaction_with_reboot(csms, firmware_factory, tmp_path):
    # The installer stops the firmware at the REPL during a session and restarts
    # it with cfg.restart(): that is a commanded restart (reason Reboot); the
    # marker holds for that one boot only, so a later power cut is PowerLoss.
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    for cmd in ("set ClockAlignedDataInterval 0", "load 1 16", "plug 1", "card 1 " + TAG):
        fw.send(cmd)
    fw.wait_line(r"transaction started")
    fw.kill()
    out = run_mp("-c", "import cfg\ncfg.open(%r)\ncfg.restart()" % str(fw.data_dir))
    assert "counts as a commanded restart" in out and "cfg:" in out
    fw.start()
    fw.wait_line(r"transaction of %s was interrupted \(Reboot\)" % TAG, 20)
    csms.wait_for(lambda: "meterStop" in csms.transactions[1], 20, "StopTransaction")
    assert csms.transactions[1]["reason"] == "Reboot"
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"transaction started")
    fw.kill()
    fw.start()
    fw.wait_line(r"interrupted \(PowerLoss\)", 20)
    csms.wait_for(lambda: len(csms.calls("StopTransaction")) == 2, 20, "second StopTransaction")
    assert [p["reason"] for _, _, p in csms.calls("StopTransaction")] == ["Reboot", "PowerLoss"]
    assert csms.violations == []


def test_queued_messages_wait_for_a_session_of_their_own_ocpp_version(tmp_path):
    # OCPP 1.6's StartTransaction is not replayed to a 2.0.1 CSMS (nor the reverse); it waits
    # in flash, across a restart, for a 1.6 session. Security events go to either version.
    out = [line for line in run_mp(ROOT / "host_tests" / "mp" / "outbox_versions.py", str(tmp_path)).splitlines()
           if "INFO" not in line]
    assert out == ["v201 first TransactionEvent 2",
                   "after restart v16 2 ['StartTransaction', 'SecurityEventNotification']",
                   "then v201 ['TransactionEvent']",
                   "nothing left []"]
