"""Events: every job's ordered event log, and the fan-out that delivers it live."""
