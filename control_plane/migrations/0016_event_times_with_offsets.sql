-- Event content (docs/api.md §4.1): a date-time without an offset is refused now; it used to be accepted and
-- encoded as UTC. Codes saved then get the `Z` they were encoded with, so that they still read back (every
-- image, download and export parses the stored content again) and their payload stays the same.
UPDATE qr_codes SET content = jsonb_set(content, '{start}', to_jsonb(content->>'start' || 'Z'))
WHERE type = 'event' AND content->>'start' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$';
UPDATE qr_codes SET content = jsonb_set(content, '{end}', to_jsonb(content->>'end' || 'Z'))
WHERE type = 'event' AND content->>'end' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$';
