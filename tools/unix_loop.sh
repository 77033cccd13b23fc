#!/bin/sh
# Runs the firmware on the MicroPython unix port the way a board's power
# supply would: when the firmware restarts itself (OCPP Reset, exit code 75)
# it is started again with the same command, terminal and data; any other
# exit ends the loop with that code.
#   tools/unix_loop.sh micropython firmware/main.py --board boards/unix --data DIR ...
# A service manager can do the same: systemd RestartForceExitStatus=75.
while :; do
    "$@"
    rc=$?
    [ "$rc" -eq 75 ] || exit "$rc"
done
