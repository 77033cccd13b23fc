# The application's version, reported in every BootNotification (firmwareVersion,
# CiString50). This is the checkout's own; `make bundle VERSION=<v>` puts a
# version.mpy with <v> in the update file it builds instead (tools/bundle.py).
VERSION = "0.1.0"
