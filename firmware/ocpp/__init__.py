# OCPP-J client side of the firmware.
