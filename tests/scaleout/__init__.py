"""Scale-out: several `emr-gateway serve` (and `worker`) processes sharing one PostgreSQL."""
