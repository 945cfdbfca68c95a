"""GoHighLevel as a destination: EMR patients and appointments kept in GHL contacts, custom fields, tags and
calendars, fed by the same outbox as the signed webhooks (`gateway.storage.ghl_destination` holds its queue)."""
