-- `export.*` events no longer carry the export's `signed_url`, a link that needs no key: events reach keys with
-- `webhooks:read` alone and every subscribed endpoint, the file is for `qr:read` (docs/exports.md, "Events").
-- Events recorded before drop it too, so neither `GET /v1/events` nor a pending delivery still hands it out.
UPDATE events SET data = data #- '{object,signed_url}'
 WHERE type IN ('export.succeeded', 'export.failed') AND data -> 'object' ? 'signed_url';
