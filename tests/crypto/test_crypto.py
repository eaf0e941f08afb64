"""Key providers (local file, AWS KMS on a local endpoint, in-memory), cache and cipher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sagevault.crypto import (
    AwsKmsKeyProvider,
    BlindIndex,
    FieldCipher,
    InMemoryKeyProvider,
    KeyCache,
    KeyProvider,
    LocalKeyFileProvider,
    PiiBlob,
    create_local_key_file,
    held_in_process,
    normalise,
)
from sagevault.errors import ConfigError, IntegrityError, KeyProviderError

CTX = {"app": "sagevault", "tenant": "T1", "purpose": "data", "version": "1"}


def roundtrip(provider: KeyProvider) -> None:
    wrapped = provider.wrap(b"k" * 32, CTX)
    assert b"k" * 32 not in wrapped
    assert provider.unwrap(wrapped, CTX) == b"k" * 32
    with pytest.raises(KeyProviderError):
        provider.unwrap(wrapped, {**CTX, "tenant": "T2"})  # wrapped keys are bound to their tenant


def test_in_memory_provider() -> None:
    roundtrip(InMemoryKeyProvider())


def test_local_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    create_local_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    provider = LocalKeyFileProvider(path)
    roundtrip(provider)
    assert "redacted" in repr(provider) and path.read_text().split()[1] not in repr(provider)
    with pytest.raises(KeyProviderError, match="never overwrites"):
        create_local_key_file(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        LocalKeyFileProvider(path)
    path.chmod(0o600)
    path.write_text("garbage\n")
    with pytest.raises(KeyProviderError, match="not a SageVault master key"):
        LocalKeyFileProvider(path)


@pytest.mark.usefixtures("aws_test_credentials")
def test_aws_kms_provider_against_a_local_kms_endpoint(kms_endpoint: str) -> None:
    import boto3

    key_id = boto3.client("kms", region_name="us-east-1", endpoint_url=kms_endpoint).create_key()["KeyMetadata"][
        "KeyId"
    ]
    provider = AwsKmsKeyProvider(key_id, region="us-east-1", endpoint_url=kms_endpoint)
    roundtrip(provider)
    assert provider.key_id == f"aws-kms:{key_id}"
    wrong = AwsKmsKeyProvider("alias/none", region="us-east-1", endpoint_url=kms_endpoint)
    with pytest.raises(KeyProviderError, match="refused to wrap"):
        wrong.wrap(b"x" * 32, CTX)
    # A KMS unwraps over the network: the API does not serve reveals in its event loop with it.
    assert not held_in_process(provider) and held_in_process(InMemoryKeyProvider())


def test_key_cache_entries_expire_and_shred_evicts_them() -> None:
    now = [0.0]
    cache: KeyCache[str] = KeyCache(ttl=60, clock=lambda: now[0])
    cache.put(("T1", "data", 1), "k1")
    cache.put(("T2", "data", 1), "k2")
    assert cache.get(("T1", "data", 1)) == "k1"
    now[0] = 61
    assert cache.get(("T1", "data", 1)) is None
    cache.put(("T1", "data", 2), "k3")
    cache.evict_tenant("T1")
    assert cache.get(("T1", "data", 2)) is None
    assert "k2" not in repr(cache)
    cache.put(("T1", "data", 2), "k3")  # a rotation's eviction: the tenant's keys may come back
    assert cache.get(("T1", "data", 2)) == "k3"
    cache.evict_tenant("T1", forever=True)  # a shred: a reader on an older snapshot cannot put one back
    cache.put(("T1", "data", 2), "k3")
    assert cache.get(("T1", "data", 2)) is None and cache.get(("T2", "data", 1)) is None  # T2 expired at 61


def test_field_cipher_binds_each_field_to_its_tenant_record_and_path() -> None:
    key = os.urandom(32)
    blob = FieldCipher(key, "T1", 1).seal("rec1", [("a.b", b"sAlice"), ("c", b"sBob")])
    assert FieldCipher(key, "T1", 1).open("rec1", blob) == {"a.b": b"sAlice", "c": b"sBob"}
    for tenant, record in (("T2", "rec1"), ("T1", "rec2")):
        with pytest.raises(IntegrityError, match="failed authentication"):
            FieldCipher(key, tenant, 1).open(record, blob)
    with pytest.raises(IntegrityError, match="truncated"):
        FieldCipher(key, "T1", 1).open("rec1", blob[:-3])
    assert "redacted" in repr(FieldCipher(key, "T1", 1))
    # The paths alone come from the header, checked as strictly as a full read.
    assert PiiBlob.paths(blob) == [p for p, _ in PiiBlob.entries(blob)] == ["a.b", "c"] and PiiBlob.paths(b"") == []
    for damaged in (blob[:-3], blob + b"\0", blob[:4], b"\x09" + blob[1:]):
        with pytest.raises(IntegrityError):
            PiiBlob.paths(damaged)


def test_blind_index_normalises_and_separates_kinds() -> None:
    index = BlindIndex(os.urandom(32))
    assert index.token("email", " Ann@Example.COM") == index.token("email", "ann@example.com")
    assert index.token("phone", "+1 (206) 555-0100") == index.token("phone", "12065550100")
    assert index.token("postal_code", "sw1a 1aa") == index.token("postal_code", "SW1A1AA")
    assert index.token("name", "José  Díaz") == index.token("name", "josé díaz")
    assert index.token("name", "12065550100") != index.token("phone", "12065550100")
    assert BlindIndex(os.urandom(32)).token("email", "a@b.c") != index.token("email", "a@b.c")
    with pytest.raises(ValueError, match="unknown search kind"):
        normalise("ssn", "1")


def test_blind_index_tokens_are_hmac_sha256_of_the_normalised_value() -> None:
    import hmac as std_hmac

    key = os.urandom(32)
    sub = std_hmac.digest(key, b"sagevault blind index\x00email", "sha256")
    expected = std_hmac.digest(sub, b"ann@example.com", "sha256")[:16]
    assert BlindIndex(key).token("email", " ANN@example.com") == expected
