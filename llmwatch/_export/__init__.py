"""Where telemetry goes: exporter presets, the batch processor, the file exporter, metric instruments."""
