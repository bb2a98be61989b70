"""interop suite (see docs/testing.md)."""
