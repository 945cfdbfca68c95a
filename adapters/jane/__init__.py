"""Jane (janeapp.com) through the clinic's own staff web endpoints."""
