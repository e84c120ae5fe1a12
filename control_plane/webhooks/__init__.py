"""Webhooks: the outbox dispatcher, Standard Webhooks signing, the retry schedule and the HTTP delivery."""
