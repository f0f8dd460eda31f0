"""What operators watch: alert thresholds, the alert rules, the Grafana dashboard and
the metrics reference, all generated from code (``make dashboards``).

Nothing here runs in the relay's processes; it writes files under ``deploy/`` and
``docs/`` that tests compare with what the code generates.
"""
