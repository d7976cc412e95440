"""The provider-neutral hot path: the call record, its lifecycle, streams, the pipeline, the runtime."""
