"""Build and demo tooling run by build.py (not part of the engine or the add-on)."""
