"""Promotion: the gate (pure), the registry moves, and the champion measured beside a student."""
