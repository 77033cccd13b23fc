"""Reservation profile (OCPP 1.6 §5.1, §5.13): ReserveNow with each answer,
CancelReservation, exact expiry, who may use a reserved connector, connector 0,
and reservations across a restart."""
import time
from datetime import datetime

from ocpp.v16 import call

from scenario import boot, statuses, wait_status, iso, icsms  # noqa: F401

NO_ALIGNED = [("ClockAlignedDataInterval", 0)]


def reserve(csms, rid, cid, tag, expiry=60, **kw):
    return csms.run_call("CP001", call.ReserveNow(connector_id=cid, expiry_date=iso(expiry), id_tag=tag,
                                                  reservation_id=rid, **kw)).status


def cancel(csms, rid):
    return csms.run_call("CP001", call.CancelReservation(reservation_id=rid)).status


def starts(csms):
    return [p for _, _, p in csms.calls("StartTransaction")]


def test_reserve_now_answers_and_cancel(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED)
    assert reserve(csms, 1, 9, "HOLDER") == "Rejected"  # unknown connector
    assert reserve(csms, 1, 0, "HOLDER") == "Rejected"  # ReserveConnectorZeroSupported is false
    assert reserve(csms, 1, 1, "HOLDER", expiry=-5) == "Rejected"  # already over
    assert reserve(csms, 1, 1, "HOLDER") == "Accepted"
    wait_status(csms, 1, "Reserved")
    assert reserve(csms, 2, 1, "OTHER") == "Occupied"  # reserved already
    # The same reservationId replaces the reservation: it moves to connector 2.
    assert reserve(csms, 1, 2, "HOLDER") == "Accepted"
    wait_status(csms, 1, "Available")
    wait_status(csms, 2, "Reserved")
    # Occupied by a transaction; Faulted; Unavailable.
    fw.send("plug 1")
    fw.send("card 1 DRIVER")
    csms.wait_for(lambda: starts(csms), 10, "StartTransaction")
    assert "reservationId" not in starts(csms)[0]
    assert reserve(csms, 3, 1, "OTHER") == "Occupied"
    fw.send("card 1 DRIVER")
    fw.send("unplug 1")
    wait_status(csms, 1, "Available")
    fw.send("fault 1 GroundFailure")
    wait_status(csms, 1, "Faulted")
    assert reserve(csms, 3, 1, "OTHER") == "Faulted"
    fw.send("fault 1 off")
    wait_status(csms, 1, "Available")
    assert csms.run_call("CP001", call.ChangeAvailability(connector_id=1, type="Inoperative")).status == "Accepted"
    assert reserve(csms, 3, 1, "OTHER") == "Unavailable"
    # CancelReservation: unknown Rejected, known Accepted and the connector is free again.
    assert cancel(csms, 77) == "Rejected"
    assert cancel(csms, 1) == "Accepted"
    wait_status(csms, 2, "Available")
    assert cancel(csms, 1) == "Rejected"
    # Wrong types are CALLERRORs.
    csms.send_raw("CP001", '[2,"rn1","ReserveNow",{"connectorId":"1","expiryDate":"%s","idTag":"X","reservationId":5}]'
                  % iso(60))
    csms.send_raw("CP001", '[2,"rn2","ReserveNow",{"connectorId":1,"expiryDate":"tomorrow","idTag":"X","reservationId":5}]')
    errors = lambda: [m[2] for _, d, _, m in csms.frames if d == "<<" and m[0] == 4]  # noqa: E731
    csms.wait_for(lambda: len(errors()) == 2, 5, "CALLERRORs")
    assert errors() == ["TypeConstraintViolation", "PropertyConstraintViolation"]
    assert csms.violations == []


def test_only_the_holder_or_its_group_may_use_it(firmware_factory, icsms):
    icsms.infos = {"SPOUSE": {"parentIdTag": "FAMILY"}, "STRANGER": {"parentIdTag": "ELSEWHERE"}}
    fw = firmware_factory(icsms)
    boot(fw, icsms, NO_ALIGNED)
    assert reserve(icsms, 11, 1, "HOLDER", parent_id_tag="FAMILY") == "Accepted"
    wait_status(icsms, 1, "Reserved")
    fw.send("plug 1")  # a vehicle alone does not take a reserved connector
    fw.send("card 1 STRANGER")
    fw.wait_line(r"connector 1 is reserved for another card: STRANGER refused")
    assert icsms.run_call("CP001", call.RemoteStartTransaction(id_tag="STRANGER", connector_id=1)).status == "Rejected"
    assert statuses(icsms, 1)[-1] == "Reserved"
    # A card of the reservation's group (parentIdTag) may; the reservation ends with its transaction.
    fw.send("card 1 SPOUSE")
    icsms.wait_for(lambda: starts(icsms), 10, "StartTransaction")
    assert starts(icsms)[0]["reservationId"] == 11 and starts(icsms)[0]["idTag"] == "SPOUSE"
    fw.wait_line(r"reservation 11 ended: its transaction started")
    assert cancel(icsms, 11) == "Rejected"
    # A remote start for the holder picks its reserved connector.
    assert reserve(icsms, 12, 2, "HOLDER") == "Accepted"
    fw.send("plug 2")
    assert icsms.run_call("CP001", call.RemoteStartTransaction(id_tag="HOLDER")).status == "Accepted"
    icsms.wait_for(lambda: len(starts(icsms)) == 2, 10, "second StartTransaction")
    assert starts(icsms)[1]["connectorId"] == 2 and starts(icsms)[1]["reservationId"] == 12
    assert icsms.violations == []


def test_expiry_is_exact_and_faults_end_reservations(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED)
    expiry = iso(2)
    assert csms.run_call("CP001", call.ReserveNow(connector_id=2, expiry_date=expiry, id_tag="HOLDER",
                                                  reservation_id=21)).status == "Accepted"
    wait_status(csms, 2, "Reserved")
    wait_status(csms, 2, "Available", 5)
    at = [t for t, d, _, m in csms.frames if d == "<<" and m[0] == 2 and m[2] == "StatusNotification"
          and m[3]["connectorId"] == 2][-1]
    # Never early; late at most by the second the CSMS's currentTime leaves out
    # (and a busy machine's scheduling).
    deadline = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
    assert deadline <= at < deadline + 2
    fw.wait_line(r"reservation 21 ended: expired")
    # A fault, or the station going Unavailable, ends reservations (§5.13).
    assert reserve(csms, 22, 1, "HOLDER") == "Accepted"
    fw.send("fault 1 OverCurrentFailure")
    fw.wait_line(r"reservation 22 ended: connector 1 is faulted")
    fw.send("fault 1 off")
    wait_status(csms, 1, "Available")
    assert reserve(csms, 23, 2, "HOLDER") == "Accepted"
    assert csms.run_call("CP001", call.ChangeAvailability(connector_id=0, type="Inoperative")).status == "Accepted"
    fw.wait_line(r"reservation 23 ended: connector 2 is unavailable")
    assert cancel(csms, 23) == "Rejected"
    assert csms.violations == []


def test_reservation_on_connector_zero(firmware_factory, icsms):
    fw = firmware_factory(icsms)
    boot(fw, icsms, NO_ALIGNED + [("ReserveConnectorZeroSupported", "true")])
    assert reserve(icsms, 31, 0, "HOLDER") == "Accepted"
    assert reserve(icsms, 32, 0, "SECOND") == "Accepted"
    # Two connectors, two reservations for any connector: both held.
    wait_status(icsms, 1, "Reserved")
    wait_status(icsms, 2, "Reserved")
    assert reserve(icsms, 33, 0, "THIRD") == "Occupied"
    assert reserve(icsms, 33, 1, "THIRD") == "Occupied"
    fw.send("plug 1")
    fw.send("card 1 STRANGER")
    fw.wait_line(r"connector 1 is reserved for another card: STRANGER refused")
    # The holder takes connector 1; its reservation ends, one remains for SECOND.
    fw.send("card 1 HOLDER")
    icsms.wait_for(lambda: starts(icsms), 10, "StartTransaction")
    assert starts(icsms)[0]["reservationId"] == 31
    assert cancel(icsms, 31) == "Rejected"
    assert statuses(icsms, 2)[-1] == "Reserved"
    assert cancel(icsms, 32) == "Accepted"
    wait_status(icsms, 2, "Available")
    assert icsms.violations == []


def test_reservations_survive_a_restart(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED)
    assert reserve(csms, 41, 1, "HOLDER", expiry=3600) == "Accepted"
    assert reserve(csms, 42, 2, "BRIEF", expiry=3) == "Accepted"
    wait_status(csms, 2, "Reserved")
    fw.stop()
    time.sleep(3)  # reservation 42 runs out while the station is off
    boot(fw, csms)
    assert statuses(csms, 1)[-1] == "Reserved"
    assert statuses(csms, 2)[-1] == "Available"
    assert cancel(csms, 42) == "Rejected"
    fw.send("plug 1")
    fw.send("card 1 SOMEONE")
    fw.wait_line(r"connector 1 is reserved for another card: SOMEONE refused")
    fw.send("card 1 holder")  # idTags are case-insensitive
    csms.wait_for(lambda: starts(csms), 10, "StartTransaction")
    assert starts(csms)[0]["reservationId"] == 41
    assert csms.violations == []
