#!/usr/bin/python3
"""Publishing to Sluice users from a Python backend (a Flask app, a worker).

Two ways, both delivered to every session of each user and resumed like
job events:

- over HTTP, `POST /v1/publish` with a service token (scope
  `sluice:publish`), for a message on its own;
- with `SELECT sluice.publish(user, data, key)` inside the application's
  own database transaction, so the message exists if and only if the
  application's change commits.

Run as a script it does one of each, plus a transaction that rolls back
(whose message must never arrive), and prints what it did as one JSON
line. Settings come from the environment:

    SLUICE_URL            http://127.0.0.1:8080 (the gateway, or nginx)
    SLUICE_SERVICE_TOKEN  a service token: sluice-gateway token --user billing --scope sluice:publish
    DATABASE_URL          the application's database (a role with EXECUTE on sluice.publish)
    SLUICE_USER           the user to publish to
    SLUICE_ITEM_ID        the demo row (public.items) the transaction updates

Needs psycopg 3 (Debian: python3-psycopg); HTTP uses the standard library.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

import psycopg


class PublishError(Exception):
    """Sluice refused a publication; `code` is its error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


def publish_http(
    base_url: str,
    service_token: str,
    users: list[str],
    data: Any,
    idempotency_key: str | None = None,
) -> list[dict[str, Any]]:
    """Publishes `data` to `users`; returns each user's `{user, seq}`.

    All users or none: the call commits in one transaction. Retrying with
    the same `idempotency_key` within 24 hours publishes nothing new and
    answers the first seqs, so a timeout can be retried safely.
    """
    body: dict[str, Any] = {"users": users, "data": data}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    request = urllib.request.Request(
        base_url.rstrip("/") + "/v1/publish",
        data=json.dumps(body).encode(),
        headers={
            "authorization": f"Bearer {service_token}",
            "content-type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["published"]
    except urllib.error.HTTPError as e:
        error = json.load(e).get("error", {})
        raise PublishError(e.code, error.get("code", ""), error.get("message", "")) from None


def publish_in(
    conn: psycopg.Connection, user: str, data: Any, idempotency_key: str | None = None
) -> int:
    """Publishes inside the caller's open transaction; returns the seq.

    Delivered only if that transaction commits.
    """
    row = conn.execute(
        "SELECT sluice.publish(%s, %s::jsonb, %s)",
        (user, json.dumps(data), idempotency_key),
    ).fetchone()
    assert row is not None
    return int(row[0])


def mark_ready(conn: psycopg.Connection, user: str, item_id: int, label: str) -> int:
    """The application's own change and the user's message, in one commit."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO public.items (id, value) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            (item_id, label),
        )
        return publish_in(conn, user, {"item": item_id, "value": label}, f"item-{item_id}-{label}")


class Rollback(Exception):
    """Raised to roll a transaction back in the demonstration."""


def main() -> int:
    base_url = os.environ.get("SLUICE_URL", "http://127.0.0.1:8080")
    token = os.environ["SLUICE_SERVICE_TOKEN"]
    user = os.environ["SLUICE_USER"]
    item_id = int(os.environ.get("SLUICE_ITEM_ID", "1"))
    done: dict[str, Any] = {}

    done["http"] = publish_http(
        base_url, token, [user], {"text": "your export is ready"}, f"export-{item_id}"
    )
    # The same key again: nothing new, the same seq.
    done["http_repeat"] = publish_http(
        base_url, token, [user], {"text": "your export is ready"}, f"export-{item_id}"
    )
    try:
        publish_http(base_url, token, [user], {"text": "something else"}, f"export-{item_id}")
    except PublishError as e:
        done["http_mismatch"] = e.code

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        done["sql_seq"] = mark_ready(conn, user, item_id, "ready")
        try:
            with conn.transaction():
                publish_in(conn, user, {"never": "delivered"})
                raise Rollback()
        except Rollback:
            done["rolled_back"] = True
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
