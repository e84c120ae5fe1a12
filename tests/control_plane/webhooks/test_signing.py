from __future__ import annotations

import base64
from datetime import UTC, datetime

from standardwebhooks import Webhook

from control_plane.webhooks.signing import new_secret, signature, signature_header


def test_the_known_answer_vector_of_the_standard_webhooks_examples() -> None:
    assert signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secrets_are_fresh_and_long_enough() -> None:
    made = {new_secret() for _ in range(100)}
    assert len(made) == 100
    assert all(s.startswith("whsec_") and len(base64.b64decode(s.removeprefix("whsec_"))) >= 24 for s in made)


def test_every_secret_in_use_signs_and_the_library_agrees() -> None:
    old, new = new_secret(), new_secret()
    body = '{"id":"evt_1","data":{"name":"Tisch 12 — Café"}}'.encode()
    header = signature_header([new, old], "evt_1", 1_800_000_000, body)
    at = datetime.fromtimestamp(1_800_000_000, UTC)
    assert header.split(" ") == [Webhook(new).sign("evt_1", at, body.decode()),
                                 Webhook(old).sign("evt_1", at, body.decode())]
