"""The web dashboard at /app/ (docs/dashboard.md): server-rendered pages over the same services as the API."""
