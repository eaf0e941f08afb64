"""The master keys a deployment holds: the current one, which wraps, and during a rotation the
one it replaces, which only unwraps what is not re-wrapped yet.

Local key file: a rotation puts the new key beside the old one as `<master key file>.next`; at
its end the old file becomes `.retired`, the new one takes the old one's name, and the retired
one is overwritten and deleted. Every state in between loads (a process that finds `.next` wraps
with it), so a rotation stopped anywhere goes on when run again. AWS KMS: the operator names the
new key as `kms_next_key_id`; at the end the old key is scheduled for deletion.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sagevault.config import Settings
from sagevault.errors import KeyProviderError

from ._provider import AwsKmsKeyProvider, KeyProvider, LocalKeyFileProvider, create_local_key_file


class MasterKeys:
    """The master keys a deployment holds, as one `KeyProvider`: `current` wraps; an unwrap uses
    the key a wrapped value names (`key_id`), or tries `current`, then `previous`. With `reload`
    (the key files), a process that meets a key it does not hold, or wraps, reads the files
    again: a rotation run by another process is seen at once."""

    def __init__(
        self,
        current: KeyProvider,
        previous: Sequence[KeyProvider] = (),
        *,
        reload: Callable[[], MasterKeys] | None = None,
    ) -> None:
        self._set(current, previous)
        self._reload = reload
        self._lock = threading.Lock()

    def _set(self, current: KeyProvider, previous: Sequence[KeyProvider]) -> None:
        self.current = current
        self.previous = tuple(p for p in previous if p.key_id != current.key_id)
        self._by_id = {k.key_id: k for k in (*self.previous, current)}

    @property
    def key_id(self) -> str:
        return self.current.key_id

    @property
    def in_process(self) -> bool:
        return all(getattr(k, "in_process", False) is True for k in self._by_id.values())

    def holds(self, key_id: str) -> bool:
        return key_id in self._by_id

    def refresh(self) -> None:
        """Read the key files again (nothing without `reload`)."""
        if self._reload is None:
            return
        fresh = self._reload()
        with self._lock:
            self._set(fresh.current, fresh.previous)

    def wrap(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        self.refresh()  # wraps are rare (a new tenant, an enrolment): a rotation begun elsewhere is seen
        return self.current.wrap(plaintext, context)

    def unwrap(self, wrapped: bytes, context: Mapping[str, str], key_id: str | None = None) -> bytes:
        try:
            return self._unwrap(wrapped, context, key_id)
        except KeyProviderError:
            if self._reload is None:
                raise
        self.refresh()  # another process may have rotated: read the key files once more
        return self._unwrap(wrapped, context, key_id)

    def _unwrap(self, wrapped: bytes, context: Mapping[str, str], key_id: str | None) -> bytes:
        if key_id is not None:
            provider = self._by_id.get(key_id)
            if provider is None:
                raise KeyProviderError(
                    f"keys of tenant {context.get('tenant', '?')} are wrapped by master key {key_id}, which this "
                    "deployment does not hold: restore that key file (or KMS key), or finish the master key "
                    "rotation with `sagevault keys rotate-master`"
                )
            return provider.unwrap(wrapped, context)
        try:
            return self.current.unwrap(wrapped, context)
        except KeyProviderError:
            for older in self.previous:
                with contextlib.suppress(KeyProviderError):
                    return older.unwrap(wrapped, context)
            raise

    def rewrapped(self, wrapped: bytes, context: Mapping[str, str]) -> bytes | None:
        """`wrapped` wrapped again by the current key, or None when the current key wrapped it."""
        with contextlib.suppress(KeyProviderError):
            self.current.unwrap(wrapped, context)
            return None
        return self.current.wrap(self.unwrap(wrapped, context), context)

    def __repr__(self) -> str:
        return f"MasterKeys(current={self.current!r}, previous={self.previous!r})"


def key_provider_from_settings(settings: Settings) -> KeyProvider:
    """The master key that wraps new tenant keys (the new one while a rotation runs)."""
    return master_keys_from_settings(settings).current


def next_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".next")


def retired_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".retired")


def master_keys_from_settings(settings: Settings, *, reloading: bool = True) -> MasterKeys:
    """The master keys the settings and the key files name, in whatever state a rotation left
    them; for key files, read again whenever another process may have rotated them."""
    if settings.key_provider != "aws-kms" and reloading:
        found = master_keys_from_settings(settings, reloading=False)
        return MasterKeys(
            found.current, found.previous, reload=lambda: master_keys_from_settings(settings, reloading=False)
        )
    if settings.key_provider == "aws-kms":
        assert settings.kms_key_id is not None  # checked by Settings

        def kms(key_id: str) -> AwsKmsKeyProvider:
            return AwsKmsKeyProvider(key_id, region=settings.kms_region, endpoint_url=settings.kms_endpoint_url)

        if settings.kms_next_key_id and settings.kms_next_key_id != settings.kms_key_id:
            return MasterKeys(kms(settings.kms_next_key_id), (kms(settings.kms_key_id),))
        return MasterKeys(kms(settings.kms_key_id))
    key_file = settings.resolved_master_key_file
    upcoming, retired = next_path(key_file), retired_path(key_file)
    previous = [LocalKeyFileProvider(retired)] if retired.exists() else []
    if upcoming.exists():  # a rotation under way: the new key wraps, the old one still unwraps
        if key_file.exists():
            previous.append(LocalKeyFileProvider(key_file))
        return MasterKeys(LocalKeyFileProvider(upcoming), tuple(previous))
    return MasterKeys(LocalKeyFileProvider(key_file), tuple(previous))


def begin_local_rotation(settings: Settings) -> bool:
    """Put a new master key beside the current one (`.next`), unless a rotation under way
    already did. Whether this call made it."""
    upcoming = next_path(settings.resolved_master_key_file)
    if upcoming.exists():
        return False
    create_local_key_file(upcoming)
    return True


def swap_local_keys(settings: Settings) -> None:
    """The new key takes the master key file's name; the old one waits as `.retired` (still
    unwrapping what a process wrapped with it meanwhile) until `destroy_retired_key`."""
    key_file = settings.resolved_master_key_file
    upcoming, retired = next_path(key_file), retired_path(key_file)
    if key_file.exists() and upcoming.exists():
        os.replace(key_file, retired)
    if upcoming.exists():
        os.replace(upcoming, key_file)
    _sync_dir(key_file.parent)


def destroy_retired_key(settings: Settings) -> bool:
    """Overwrite the retired master key file and delete it. Whether there was one."""
    retired = retired_path(settings.resolved_master_key_file)
    try:
        fd = os.open(retired, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        os.write(fd, os.urandom(max(size, 64)))
        os.fsync(fd)
    finally:
        os.close(fd)
    retired.unlink()
    _sync_dir(retired.parent)
    return True


def schedule_kms_deletion(settings: Settings, key_id: str, days: int = 7) -> None:
    """Ask AWS KMS to delete the old master key after `days` (KMS's least is 7)."""
    provider = AwsKmsKeyProvider(key_id, region=settings.kms_region, endpoint_url=settings.kms_endpoint_url)
    try:
        provider.client.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=days)
    except Exception as exc:
        raise KeyProviderError(
            f"AWS KMS did not schedule the deletion of the old master key ({type(exc).__name__}); every tenant key "
            f"is re-wrapped already, so schedule it yourself: aws kms schedule-key-deletion --key-id {key_id}"
        ) from None


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
