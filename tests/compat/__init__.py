"""SDK version compatibility: what llmwatch does with an SDK version it was not tested with."""
