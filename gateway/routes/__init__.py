"""HTTP routes, one module per resource, registered explicitly in gateway.app."""
