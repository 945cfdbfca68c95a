"""ClinicSync Pro-compatible routes: their paths and bodies, translated to the gateway's normalized commands."""
