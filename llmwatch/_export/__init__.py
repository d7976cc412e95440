"""Where telemetry goes, one concept per module.

``_presets`` plans ``configure(exporter=...)`` into exporters (the OTLP ones in ``_otlp``); ``_batch``
is the span processor; ``_file`` the JSON Lines exporter; ``_limits`` cuts attributes to a backend's
limits; ``_forksafe`` rebuilds exporters in a forked child; ``_process_exit`` flushes multiprocessing
children; ``_metrics`` holds the metric instruments.
"""
