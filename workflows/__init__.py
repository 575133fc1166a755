"""Deterministic orchestration of signoff and the payload types it shares."""
