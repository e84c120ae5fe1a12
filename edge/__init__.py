"""The redirect edge: request → resolve → record → 302. Imports only `shared`."""
