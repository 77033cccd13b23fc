# OCPP 1.6 specifics: generated schema tables (tables.py), handlers.
