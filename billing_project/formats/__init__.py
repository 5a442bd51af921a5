"""Date formats of the console (FORMAT_MODULE_PATH): instants as finance and the logs write
them, "2026-01-15 00:00", in UTC (TIME_ZONE), instead of "Jan. 15, 2026, midnight"."""
