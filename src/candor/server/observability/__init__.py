"""Prometheus: metrics fed by the core's events, and collectors that read the core's
thread-safe snapshots at scrape time."""
