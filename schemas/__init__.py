"""The normalized contract: msgspec Structs and enums only. Nothing here knows an EMR exists."""
