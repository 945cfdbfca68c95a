"""Cliniko: official REST v1 (https://docs.api.cliniko.com), checked against its OpenAPI document."""
