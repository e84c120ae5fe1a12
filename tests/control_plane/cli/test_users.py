from __future__ import annotations

import json
import os
import subprocess
import sys

import asyncpg


def _scanroute(env: dict[str, str], *args: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "control_plane.cli", *args], input=password + "\n",
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


async def test_users_create_makes_the_organisation_and_a_user_who_can_sign_in(env: dict[str, str], database_url: str):
    made = _scanroute(env, "users", "create", "--org", "Acme Print", "--email", "ana@example.com", "--role",
                      "editor", "--password-stdin", "--json", password="a long secret")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["email"] == "ana@example.com" and created["role"] == "editor"
    assert created["id"].startswith("usr_") and created["org_id"].startswith("org_")
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        row = await conn.fetchrow("SELECT o.name, u.password_hash FROM users u JOIN organisations o ON o.id = u.org_id")
    finally:
        await conn.close()
    assert row["name"] == "Acme Print"
    assert row["password_hash"].startswith("$argon2id$") and "a long secret" not in row["password_hash"]


def test_an_email_signs_in_to_one_account_across_the_installation(env: dict[str, str]):
    first = _scanroute(env, "users", "create", "--org", "one", "--email", "ana@example.com", "--password-stdin",
                       password="a long secret")
    again = _scanroute(env, "users", "create", "--org", "two", "--email", "Ana@Example.com", "--password-stdin",
                       password="a long secret")
    assert first.returncode == 0 and again.returncode == 1
    assert "already has an account" in again.stderr


def test_users_create_refuses_a_short_password(env: dict[str, str]):
    short = _scanroute(env, "users", "create", "--org", "one", "--email", "ana@example.com", "--password-stdin",
                       password="short")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
