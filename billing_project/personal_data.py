"""Personal data encrypted at rest (issue 16, part 6).

The personal fields (a tenant's name, billing email, address and tax ID; the buyer printed
on an invoice; the issued PDFs that print it) are stored as Fernet tokens: AES-128-CBC with
an HMAC-SHA256, so a token that was altered or made under another key does not decrypt.
The key is PERSONAL_DATA_KEY, from the environment; PERSONAL_DATA_KEY_FALLBACKS are older
keys that still decrypt (cryptography's MultiFernet), so a key is rotated by putting the new
one first and running `manage.py personal_data rekey` (README, Privacy and compliance).

The cipher is cryptography's (pinned, maintained). The fields are ours rather than
django-fernet-encrypted-fields's, whose fields return the stored token as the value when it
does not decrypt (a wrong key shows ciphertext as a name, and saving encrypts the token
again), derive their keys from SECRET_KEY (rotating the sessions' key would re-key the
data) and store an empty value as NULL. Here a value that does not decrypt is an error
naming the field, an empty value is a token like any other (the columns stay NOT NULL),
and a lookup on an encrypted field is refused: a token is random, so `name="Acme"` could
only ever match nothing.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import models

# Every Fernet token starts so (version byte 0x80 and the timestamp's first bytes, base64):
# the database's guards tell a token from a plain value by it.
CIPHERTEXT_PREFIX = "gAAAAA"


class PersonalDataUnreadable(ImproperlyConfigured):
    """A stored personal value does not decrypt under PERSONAL_DATA_KEY or its fallbacks."""


def keys() -> tuple[str, ...]:
    return (settings.PERSONAL_DATA_KEY, *settings.PERSONAL_DATA_KEY_FALLBACKS)


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


@functools.lru_cache(maxsize=8)
def _primary(key: str) -> Fernet:
    return Fernet(key)


def encrypt(data: bytes) -> bytes:
    return _fernet(keys()).encrypt(data)


def decrypt(token: bytes, where: str) -> bytes:
    try:
        return _fernet(keys()).decrypt(token)
    except InvalidToken:
        raise PersonalDataUnreadable(
            f"{where}: a stored value does not decrypt under PERSONAL_DATA_KEY or PERSONAL_DATA_KEY_FALLBACKS"
            " (a key missing from the environment, or the value altered)"
        ) from None


def encrypt_text(value: str) -> str:
    return encrypt(value.encode()).decode()


def decrypt_text(token: str, where: str) -> str:
    return decrypt(token.encode(), where).decode()


def under_current_key(token: bytes) -> bool:
    try:
        _primary(settings.PERSONAL_DATA_KEY).decrypt(token)
    except InvalidToken:
        return False
    return True


def rekeyed(token: bytes, where: str) -> bytes | None:
    """The token under the current key, or None when it is already."""
    return None if under_current_key(token) else encrypt(decrypt(token, where))


class _Encrypted:
    """Shared by the encrypted fields: no lookups, an error naming the field."""

    model: Any
    name: str

    def where(self) -> str:
        return f"{self.model._meta.label}.{self.name}"

    def get_lookup(self, lookup_name: str) -> Any:
        found = super().get_lookup(lookup_name)  # type: ignore[misc]
        if found is None or lookup_name == "isnull":
            return found  # not a lookup (Django tries it as a transform next), or harmless
        raise FieldError(f"{self.where()} is encrypted at rest: it cannot be filtered or searched")

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(f"{self.where()} is encrypted at rest: it cannot be filtered or searched")


class _EncryptedText(_Encrypted):
    """A string field stored as a token in a text column (the plain value's length is the
    field's max_length, checked by its validators before it is encrypted)."""

    def get_internal_type(self) -> str:
        return "TextField"

    def db_type(self, connection: Any) -> str:
        return "text"

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        value = super().get_db_prep_value(value, connection, prepared)  # type: ignore[misc]
        return value if value is None else encrypt_text(str(value))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return value if value is None else decrypt_text(value, self.where())


class EncryptedCharField(_EncryptedText, models.CharField):  # type: ignore[type-arg]
    pass


class EncryptedEmailField(_EncryptedText, models.EmailField):  # type: ignore[type-arg]
    pass


class EncryptedTextField(_EncryptedText, models.TextField):  # type: ignore[type-arg]
    pass


class EncryptedBinaryField(_Encrypted, models.BinaryField):  # type: ignore[type-arg]
    """Bytes stored as a token's bytes (a bytea column, as before)."""

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        return super().get_db_prep_value(encrypt(bytes(value)), connection, prepared)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return value if value is None else decrypt(bytes(value), self.where())


class PartlyEncryptedJSONField(_Encrypted, models.JSONField):
    """A JSON object whose `personal` keys' string values are tokens and whose other keys
    stay plain (an invoice's buyer: its account reference and country are not secret, and
    the invoice guard checks them in SQL)."""

    def __init__(self, *args: Any, personal: tuple[str, ...] = (), **kwargs: Any) -> None:
        self.personal = tuple(personal)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["personal"] = self.personal
        return name, path, args, kwargs

    def get_lookup(self, lookup_name: str) -> Any:
        # has_key and friends name keys, which stay plain; only values are tokens.
        if lookup_name in ("has_key", "has_keys", "has_any_keys"):
            return models.JSONField.get_lookup(self, lookup_name)
        return super().get_lookup(lookup_name)

    def get_transform(self, lookup_name: str) -> Any:
        if lookup_name in self.personal:
            return super().get_transform(lookup_name)
        return models.JSONField.get_transform(self, lookup_name)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if isinstance(value, dict):
            value = {
                key: encrypt_text(item) if key in self.personal and isinstance(item, str) else item
                for key, item in value.items()
            }
        return super().get_db_prep_value(value, connection, prepared)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        value = super().from_db_value(value, expression, connection)
        if isinstance(value, dict):
            where = self.where()
            value = {
                key: decrypt_text(item, where) if key in self.personal and isinstance(item, str) else item
                for key, item in value.items()
            }
        return value


# ------------------------------------------------------------------ rewriting stored values
# Below the ORM, batch by batch, in transactions that say so (billing.personal_rekey): the
# guards of finalized invoices and issued documents let exactly this through (tokens for
# the same plain values: the other keys and the checksum unchanged).


def encrypted_columns() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(table, column, kind, personal keys) of every encrypted field of the installed apps."""
    from django.apps import apps

    found: list[tuple[str, str, str, tuple[str, ...]]] = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if field.column is None:
                continue
            if isinstance(field, PartlyEncryptedJSONField):
                found.append((model._meta.db_table, field.column, "json", field.personal))
            elif isinstance(field, EncryptedBinaryField):
                found.append((model._meta.db_table, field.column, "bytes", ()))
            elif isinstance(field, _EncryptedText):
                found.append((model._meta.db_table, field.column, "text", ()))
    return sorted(found)


def _rewritten(kind: str, value: Any, personal: tuple[str, ...], change: Any, where: str) -> Any:
    """The stored value with each encrypted part passed through `change(data, where)` (bytes
    → bytes, or None when it stays), or None when nothing changed."""
    if value is None:
        return None
    if kind == "bytes":
        return change(bytes(value), where)
    if kind == "text":
        new = change(value.encode(), where)
        return None if new is None else new.decode()
    document = json.loads(value) if isinstance(value, str) else value
    if not isinstance(document, dict):
        return None
    touched = False
    for key in personal:
        item = document.get(key)
        if isinstance(item, str):
            new = change(item.encode(), f"{where}.{key}")
            if new is not None:
                document[key], touched = new.decode(), True
    return json.dumps(document) if touched else None


def columns_rewrite(
    columns: list[tuple[str, str, str, tuple[str, ...]]], change: Any, *, batch: int = 500, write: bool = True
) -> int:
    """Pass every stored value of `columns` through `change`, `batch` rows per transaction
    (locked while rewritten); how many values were rewritten (`write=False`: would be).
    Tokens are written under billing.personal_rekey 'on'; plain values (token_decrypt, a
    migration's reverse) under 'plain'."""
    mode = "plain" if change is token_decrypt else "on"
    from django.db import connection, transaction

    rewritten = 0
    for table, column, kind, personal in columns:
        cast = "::jsonb" if kind == "json" else ""
        lock = "FOR UPDATE" if write else ""
        last = 0
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('billing.personal_rekey', %s, true)", [mode])
                cursor.execute(
                    f"SELECT id, {column} FROM {table} WHERE id > %s ORDER BY id LIMIT %s {lock}",  # noqa: S608
                    [last, batch],
                )
                rows = cursor.fetchall()
                for pk, value in rows:
                    new = _rewritten(kind, value, personal, change, f"{table}.{column} (row id {pk})")
                    if new is not None:
                        rewritten += 1
                        if write:
                            cursor.execute(
                                f"UPDATE {table} SET {column} = %s{cast} WHERE id = %s",  # noqa: S608
                                [new, pk],
                            )
                cursor.execute("SET LOCAL billing.personal_rekey = ''")
            if len(rows) < batch:
                break
            last = rows[-1][0]
    return rewritten


def plain_encrypt(plain: bytes, where: str) -> bytes:
    """A migration's change: the plain values stored before encryption, encrypted."""
    return encrypt(plain)


def token_decrypt(token: bytes, where: str) -> bytes:
    """A migration's reverse: back to plain values."""
    return decrypt(token, where)


def token_rekey(token: bytes, where: str) -> bytes | None:
    """Under the current key (None when it is already); a token no key reads is an error."""
    return rekeyed(token, where)
