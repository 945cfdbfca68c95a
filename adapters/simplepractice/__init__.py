"""SimplePractice: the clinician web app JSON:API, the client-portal slots API, and an emulator of both."""
