"""The operator console: server-rendered pages at /console (Jinja templates, plain HTML forms, SVG charts drawn on the
server; no JavaScript), behind operator sign-in. Route handlers live in `gateway.routes.console`; this package holds
what they share: security (sessions, CSRF, headers), the pages' data (`views`), charts, templates and the CSS.

Every action a page offers calls the same use-case code as the API or the CLI (WebhookStore for deliveries,
`gateway.usecases.keys`, `gateway.usecases.locations`, `gateway.sync.full`)."""
