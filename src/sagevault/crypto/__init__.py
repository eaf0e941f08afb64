"""Key providers, tenant key objects, the field cipher and the blind index.

Key hierarchy: a master key (KEK) held by a `KeyProvider` outside the database wraps each
tenant's data keys (AES-256-GCM, versioned) and blind-index key (HMAC-SHA256). Wrapped keys are
stored by the vault; unwrapped ones live only in a `KeyCache` with a bounded lifetime.
"""

from __future__ import annotations

from ._blind import SEARCH_KINDS, BlindIndex, normalise
from ._cache import KeyCache
from ._field import FieldCipher, PiiBlob, decode_value, encode_value
from ._master import (
    MasterKeys,
    begin_local_rotation,
    destroy_retired_key,
    key_provider_from_settings,
    master_keys_from_settings,
    schedule_kms_deletion,
    swap_local_keys,
)
from ._provider import (
    AwsKmsKeyProvider,
    InMemoryKeyProvider,
    KeyProvider,
    LocalKeyFileProvider,
    create_local_key_file,
    held_in_process,
)
from ._secret_files import read_secret_file, write_secret_file
from ._tls import (
    CIPHERS,
    LOCAL_NAMES,
    TlsFiles,
    client_context,
    create_local_tls,
    issue_client_certificate,
    server_context,
    tls_files,
)

__all__ = [
    "CIPHERS",
    "LOCAL_NAMES",
    "SEARCH_KINDS",
    "AwsKmsKeyProvider",
    "BlindIndex",
    "FieldCipher",
    "InMemoryKeyProvider",
    "KeyCache",
    "KeyProvider",
    "LocalKeyFileProvider",
    "MasterKeys",
    "PiiBlob",
    "TlsFiles",
    "begin_local_rotation",
    "client_context",
    "create_local_key_file",
    "create_local_tls",
    "decode_value",
    "destroy_retired_key",
    "encode_value",
    "held_in_process",
    "issue_client_certificate",
    "key_provider_from_settings",
    "master_keys_from_settings",
    "normalise",
    "read_secret_file",
    "schedule_kms_deletion",
    "server_context",
    "swap_local_keys",
    "tls_files",
    "write_secret_file",
]
