"""Shared package of the saved-card payments service: models, ePay client, store, use cases."""
