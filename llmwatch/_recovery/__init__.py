"""Recovery: circuit breakers' health view, the health endpoint and alert drills."""
