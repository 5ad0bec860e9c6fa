"""Synthetic probes: flows, runner, auth and session libraries, scheduler, results."""
