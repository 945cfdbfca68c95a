"""Practice Better (REST v1, OAuth2 client credentials): adapter, client, client index, emulator."""
