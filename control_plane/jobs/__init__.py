"""The export/import job worker (`scanroute jobs`): no web framework, only services, rendering and shared."""
