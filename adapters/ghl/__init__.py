"""GoHighLevel (LeadConnector) as a sync destination: the API v2 client and its emulator."""
