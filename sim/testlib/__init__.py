"""Helpers for the simulator's tests (t/sim/*.t): TAP output, a managed
simulator process with an HTTP client, and an OpenAPI schema validator."""
