"""GoHighLevel entry points: workflow webhook payloads, path tokens, marketplace signatures, customData references."""
