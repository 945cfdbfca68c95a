"""Halaxy: a FHIR (R4B) practice-management API, official and self-serve (the practice buys the API add-on)."""
