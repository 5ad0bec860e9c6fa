"""Reading secrets and redacting them from probe output."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalmine.probes.model import SecretRef, Where
from coalmine.probes.secrets import Redactor, SecretError, SecretStore, read_secret


def test_secrets_come_from_env_or_file_with_one_trailing_newline_removed(tmp_path: Path) -> None:
    assert read_secret(SecretRef("token", env="TOKEN"), {"TOKEN": "t-abc"}) == "t-abc"
    file = tmp_path / "pw"
    file.write_text("line1\nline2\n\n")
    assert read_secret(SecretRef("pw", file=str(file)), {}) == "line1\nline2\n"
    file.write_text("crlf-secret\r\n")
    assert read_secret(SecretRef("pw", file=str(file)), {}) == "crlf-secret"


def test_a_missing_secret_names_the_secret_and_where_it_was_declared(tmp_path: Path) -> None:
    ref = SecretRef("db_password", env="DB_PASSWORD", where=Where("flows/a.yaml", 12))
    with pytest.raises(SecretError) as err:
        read_secret(ref, {})
    text = err.value.one_line()
    assert "db_password" in text and "DB_PASSWORD is not set" in text
    assert text.startswith("flows/a.yaml:12: secrets.db_password:")
    missing = SecretRef("cert", file=str(tmp_path / "nope.txt"))
    with pytest.raises(SecretError, match=r"secret 'cert': file .*nope.txt does not exist"):
        read_secret(missing, {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        read_secret(SecretRef("e", file=str(empty)), {})


def test_the_store_redacts_readable_secrets_and_fails_only_when_a_missing_one_is_used() -> None:
    redactor = Redactor()
    refs = {"ok": SecretRef("ok", env="OK"), "gone": SecretRef("gone", env="GONE")}
    store = SecretStore(refs, {"OK": "value-of-ok"}, redactor)
    assert store.get("ok") == "value-of-ok"
    assert redactor.redact("x value-of-ok y") == "x *** y"
    with pytest.raises(SecretError, match="GONE is not set"):
        store.get("gone")
    with pytest.raises(SecretError, match="unknown secret 'other'"):
        store.get("other")


def test_longest_secrets_are_replaced_first_and_encoded_forms_too() -> None:
    r = Redactor()
    r.add("abcd1234")
    r.add("abcd1234-extended")
    r.add('p@ss "word"/+')
    assert r.redact("a=abcd1234-extended b=abcd1234") == "a=*** b=***"
    assert r.redact("q=p%40ss+%22word%22%2F%2B") == "q=***"  # form / query encoding
    assert r.redact('{"pw": "p@ss \\"word\\"/+"}') == '{"pw": "***"}'  # JSON escaping
    assert r.redact("nothing here") == "nothing here"


def test_short_secrets_are_redacted_only_as_whole_tokens() -> None:
    r = Redactor()
    r.add("abc")
    assert r.redact("pin=abc;") == "pin=***;"
    assert r.redact("abcdef and xabc") == "abcdef and xabc"


def test_urls_lose_their_user_info() -> None:
    r = Redactor()
    assert r.redact_url("https://bob:hunter2-pw@db.example/x") == "https://***@db.example/x"
    assert r.redact("later: hunter2-pw") == "later: ***"  # the password is now known


def test_sensitive_headers_are_masked_and_their_values_learned() -> None:
    r = Redactor()
    r.observe_headers(
        [
            ("Set-Cookie", "session=0123456789abcdef; Path=/; HttpOnly"),
            ("Authorization", "Bearer tok-ffffeeeeddddcccc"),
            ("X-Session-Id", "sid-1234567890"),
            ("Content-Type", "application/json"),
        ]
    )
    assert (
        r.redact("echo 0123456789abcdef tok-ffffeeeeddddcccc sid-1234567890") == "echo *** *** ***"
    )
    assert r.redact_header("Set-Cookie", "session=0123; Path=/") == "session=***; Path=/"
    assert r.redact_header("Cookie", "a=1; b=2") == "a=***; b=***"
    assert r.redact_header("Authorization", "Basic Zm9vOmJhcg==") == "Basic ***"
    assert r.redact_header("X-API-Key", "k") == "***"
    assert r.redact_header("Content-Type", "application/json") == "application/json"


def test_credential_fields_of_json_bodies_are_learned_but_short_values_are_not() -> None:
    r = Redactor()
    r.observe_body(
        '{"user": "alice", "csrf": "c5f1a2b3c4d5e6", "data": [{"api_key": "kk-99887766"}],'
        ' "token_type": "Bearer", "session": "short"}',
        "application/json",
    )
    assert r.redact("c5f1a2b3c4d5e6 kk-99887766") == "*** ***"
    assert r.redact("alice Bearer short") == "alice Bearer short"
    r.observe_body("not json csrf=zzzzzzzzzzzz", "text/plain")
    assert r.redact("zzzzzzzzzzzz") == "zzzzzzzzzzzz"
