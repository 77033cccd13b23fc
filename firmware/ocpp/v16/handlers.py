# OCPP 1.6 operations initiated by the CSMS: action name -> handler.
# A handler gets the checked payload and returns the response payload, or
# (response, after) where `after` is a coroutine function run once the
# response is out. Handlers only call the station model and configuration.
import log

VENDOR_ID = "mpocpp"  # our vendorId for DataTransfer


def table(cp):
    config = cp.config

    def data_transfer(p):
        # OCPP 1.6 §5.6: we know only our own vendorId.
        if p["vendorId"] != VENDOR_ID:
            return {"status": "UnknownVendorId"}
        if p.get("messageId") == "Echo":
            return {"status": "Accepted", "data": p.get("data", "")}
        return {"status": "UnknownMessageId"}

    def change_configuration(p):
        status = config.set(p["key"], p["value"])
        log.info("config", "CSMS set %s: %s" % (p["key"], status))
        return {"status": status}

    def get_configuration(p):
        keys = p.get("key")
        limit = config.get("GetConfigurationMaxKeys")
        known, unknown = config.items(keys[:limit] if keys else None)
        answer = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return answer

    station = cp.station

    def remote_start(p):
        # OCPP 1.6 §5.11: Accepted only when a connector can take it.
        c = station.free_connector(p.get("connectorId"))
        if c is None:
            return {"status": "Rejected"}

        async def start():
            await station.remote_start(c, p["idTag"], config.get("AuthorizeRemoteTxRequests"))
        return {"status": "Accepted"}, start

    def remote_stop(p):
        # OCPP 1.6 §5.12: Rejected for a transaction we do not know.
        tx = station.transaction_by_id(p["transactionId"])
        if tx is None:
            return {"status": "Rejected"}

        async def stop():
            station.stop_transaction(station.connector(tx.connector_id), "Remote")
        return {"status": "Accepted"}, stop

    return {
        "RemoteStartTransaction": remote_start,
        "RemoteStopTransaction": remote_stop,
        "DataTransfer": data_transfer,
        "ChangeConfiguration": change_configuration,
        "GetConfiguration": get_configuration,
    }
