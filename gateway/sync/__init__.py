"""Change detection: poll the EMRs, compare patient snapshots, write events to the outbox."""
