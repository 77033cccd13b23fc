"""Boot per OCPP 1.6 §4.2 and the connection supervisor."""
import time

from ocpp.v16 import call

from conftest import free_port
from dev_csms import DevCSMS

TAG = "04A2B3C4D5"


def call_times(csms, action):
    return [t for t, d, _, m in csms.frames if d == "<<" and isinstance(m, list) and m[0] == 2 and m[2] == action]


def test_pending_then_accepted(firmware_factory):
    csms = DevCSMS(boot_replies=[("Pending", 2)])
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms)
        fw.start()
        fw.wait_line(r"answered Pending")
        # While Pending, the CSMS may talk to us; remote start is refused.
        csms.wait_for(lambda: "CP001" in csms.handlers, 5, "connection")
        answer = csms.run_call("CP001", call.RemoteStartTransaction(id_tag=TAG, connector_id=1))
        assert answer.status == "Rejected"
        answer = csms.run_call("CP001", call.GetConfiguration(key=["HeartbeatInterval"]))
        assert answer.configuration_key[0]["key"] == "HeartbeatInterval"
        fw.wait_line(r"accepted this charge point", 10)
        csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= 3, 5, "statuses")
        boots = call_times(csms, "BootNotification")
        assert len(boots) == 2 and boots[1] - boots[0] >= 1.9  # waited the interval
        # Nothing but BootNotification before Accepted.
        first_other = min(call_times(csms, "StatusNotification"))
        assert first_other > boots[1]
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_rejected_waits_interval_and_answers_nothing(firmware_factory):
    csms = DevCSMS(boot_replies=[("Rejected", 3)], response_timeout=1)
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms)
        fw.start()
        fw.wait_line(r"answered Rejected")
        csms.wait_for(lambda: "CP001" in csms.handlers, 5, "connection")
        try:
            csms.run_call("CP001", call.GetConfiguration(key=["HeartbeatInterval"]), timeout=5)
            raise AssertionError("a Rejected charge point answered a CALL")
        except TimeoutError:
            pass
        fw.wait_line(r"accepted this charge point", 10)
        boots = call_times(csms, "BootNotification")
        assert len(boots) == 2 and boots[1] - boots[0] >= 2.9
        # Between the two boots the charge point sent nothing at all: no answer either.
        sent = [m for t, d, _, m in csms.frames if d == "<<" and boots[0] < t < boots[1]]
        assert sent == []
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_csms_down_at_start_then_up(firmware_factory):
    port = free_port()
    fw = firmware_factory("ws://127.0.0.1:%d" % port)
    fw.start()
    fw.wait_line(r"cannot connect")
    fw.wait_line(r"reconnecting in")
    csms = DevCSMS()
    csms.start_in_thread(port=port)
    try:
        fw.wait_line(r"accepted this charge point", 30)
        assert csms.actions()[0] == "BootNotification"
    finally:
        csms.stop_thread()


def test_connection_drops_mid_transaction_and_comes_back(csms, firmware_factory):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    fw.send("set ClockAlignedDataInterval 0")
    fw.send("set MeterValueSampleInterval 1")
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.transactions.get(1, {}).get("meterValues"), 15, "meter values")
    csms.drop("CP001")
    fw.wait_line(r"connection to the CSMS lost")
    fw.send("card 1 " + TAG)  # stopped while offline: must reach the CSMS later
    fw.wait_line(r"transaction stopped")
    fw.wait_line(r"link: connected \(ocpp1\.6\)$", 30)
    csms.wait_for(lambda: "meterStop" in csms.transactions[1], 20, "StopTransaction after reconnect")
    # A reconnect within the same power cycle does not repeat BootNotification (OCPP-J §5.4).
    assert csms.actions().count("BootNotification") == 1
    assert csms.connections == 2
    tx = csms.transactions[1]
    assert tx["reason"] == "Local" and tx["meterStop"] > tx["meterStart"]
    # After the reconnect the current status is reported again.
    csms.wait_for(lambda: [p for _, _, p in csms.calls("StatusNotification") if p["status"] == "Finishing"], 10,
                  "Finishing reported")
    assert csms.violations == []


def test_http_401_is_logged_and_retried(firmware_factory):
    csms = DevCSMS(reject_auth=True)
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms)
        fw.start()
        line = fw.wait_line(r"cannot connect")
        assert "401" in line
        csms.reject_auth = False
        fw.wait_line(r"accepted this charge point", 30)
    finally:
        csms.stop_thread()


def test_wss_with_the_right_ca_and_refused_with_a_wrong_one(pki, firmware_factory, tmp_path):
    from conftest import server_tls
    csms = DevCSMS()
    csms.start_in_thread(ssl=server_tls(pki))
    try:
        url = "wss://localhost:%d" % csms.port
        bad = firmware_factory(url, "CP-WRONG-CA", extra=["--ca", str(pki / "ca2.pem")])
        bad.start()
        line = bad.wait_line(r"cannot connect")
        assert "TLS" in line or "certificate" in line
        good = firmware_factory(url, "CP-TLS", extra=["--ca", str(pki / "ca.pem")])
        good.start()
        good.wait_line(r"accepted this charge point", 20)
        assert csms.actions()[0] == "BootNotification"
        assert "CP-WRONG-CA" not in {cp for _, _, cp, _ in csms.frames}
    finally:
        csms.stop_thread()
