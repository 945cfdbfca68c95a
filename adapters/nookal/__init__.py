"""Nookal (v2 REST API) adapter and emulator."""
