"""The signed DPP evidence pack: one zip an auditor checks offline.

Contents: the report (JSON, HTML, Markdown), the record of processing, the last closed
access-review campaign's signed report, the result of an audit verify run for the pack, the
signed certificate of every done deletion or return request, and `manifest.json` (the SHA-256
and size of every file) signed with SageVault's Ed25519 signing key (the audit signing key, as
deletion certificates are) in `manifest.sig`, with the public key as `signing-key.pub`.

The zip has one canonical layout (stored, not compressed; fixed dates, modes and order), so
`verify_pack` rebuilds it from what it read and compares it byte for byte: a byte changed
anywhere (a file, a header, the directory) fails, not only one inside a listed file. A part that
could not be read is left out and named under `omitted` in the signed manifest, with the reason.

`verify_pack` never trusts a key from inside the pack: anyone can re-sign a changed pack with a
fresh key and put that key inside. It checks the signature with the public key the verifier
trusts (SageVault's audit signing public key), and a pack whose embedded key is not that key is
invalid. Before it reads any entry it bounds the file's size and refuses an entry that is
compressed or declares more bytes than the file holds (no zip bomb is ever inflated)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from sagevault.audit import Asker, AuditEvent, EventName, Signer, load_public_key, public_path
from sagevault.audit._signing import verify_signature
from sagevault.errors import SageVaultError
from sagevault.identity import Principal

from ._context import method, paged
from ._model import Report, render_html, render_json, render_markdown
from ._report import evaluate, unreadable

if TYPE_CHECKING:
    from sagevault.deployment import Deployment

PACK_FORMAT = "sagevault-evidence-pack-v1"
MANIFEST, SIGNATURE, PUBLIC_KEY = "manifest.json", "manifest.sig", "signing-key.pub"
SIGNED = (MANIFEST, SIGNATURE, PUBLIC_KEY)
_DATE = (1980, 1, 1, 0, 0, 0)
MAX_PACK_BYTES = 512 * 1024 * 1024
MAX_PACK_ENTRIES = 100_000


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"


def key_sha256(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    """The canonical zip of `entries`, in their order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o600 << 16
            zf.writestr(info, content)
    return buffer.getvalue()


@dataclass(frozen=True)
class Pack:
    path: Path | None  # None: built in memory only (the API answers with `data`)
    data: bytes = field(repr=False)
    sha256: str
    files: list[str]
    omitted: dict[str, str]
    report: Report


def _verify_json(d: Deployment, principal: Principal) -> bytes:
    report = d.audit.verify(Asker(principal), workers=1)
    problems = list(report.problems)
    if report.unreadable:  # file paths stay on the server
        problems = ["the audit verification key or the digest file could not be read"]
    return _canonical(
        {
            "ok": report.ok and report.unrecorded is None,
            "verified_at": d.now().isoformat(),
            "events": report.events,
            "digests": report.digests,
            "sealed_through": report.sealed_through,
            "undigested": report.undigested,
            "unsealed": report.unsealed,
            "first_bad_seq": report.first_bad_seq,
            "problems": problems,
            "recorded": report.unrecorded is None,
        }
    )


def _gather(d: Deployment, conn: Connection, principal: Principal) -> tuple[dict[str, bytes], dict[str, str], Report]:
    files: dict[str, bytes] = {}
    omitted: dict[str, str] = {}

    def part(name: str, make: Any) -> None:
        try:
            with conn.begin_nested():
                made = make()
        except Exception as exc:
            omitted[name] = unreadable(exc)
        else:
            if made is None:
                omitted[name] = "none exists yet"
            elif isinstance(made, dict):
                files.update(made)
            else:
                files[name] = made

    def ropa() -> bytes:
        assets = method(d.governance.assets, "list_assets")(conn, principal=principal)
        return str(method(d.governance.ropa, "export")(conn, principal=principal, assets=assets, fmt="json")).encode()

    def review() -> bytes | None:
        reviews = d.governance.reviews
        last = method(reviews, "last_closed")(conn)
        if last is None:
            return None
        return _canonical(method(reviews, "export")(conn, int(last["id"]), principal=principal))

    def certificates() -> dict[str, bytes] | None:
        done = list(paged(lambda **kw: d.deletion.list_requests(conn, principal=principal, state="done", **kw)))
        out = {
            f"certificates/SV-DEL-{r.id}.json": _canonical(d.deletion.certificate(conn, r.id, principal=principal))
            for r in done
        }
        return out or None

    # The audit verify runs first, so the report it holds has seen that run (never "never verified"
    # beside an audit-verify.json that is ok).
    part("audit-verify.json", lambda: _verify_json(d, principal))
    report = evaluate(d, conn, principal=principal)
    files["report.json"] = render_json(report).encode()
    files["report.html"] = render_html(report).encode()
    files["report.md"] = render_markdown(report).encode()
    part("ropa.json", ropa)
    part("access-review.json", review)
    part("certificates/", certificates)
    return files, omitted, report


def build_pack(d: Deployment, conn: Connection, path: Path | None, *, principal: Principal) -> Pack:
    """Write the signed evidence pack to `path` (0600, replaced atomically; None: only in memory,
    as `Pack.data`) and record
    compliance:pack:create with its SHA-256. Needs `governance:read` (the report's check);
    refused without the signing key (no unsigned pack is written)."""
    key_file = d.settings.resolved_audit_signing_key_file
    signer = Signer(key_file)
    public = load_public_key(public_path(key_file))
    files, omitted, report = _gather(d, conn, principal)
    manifest = {
        "format": PACK_FORMAT,
        "created_at": report.generated_at.isoformat(),
        "created_by": principal.id,
        "report_counts": report.counts,
        "files": [
            {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
            for name, content in sorted(files.items())
        ],
        "omitted": omitted,
        "signing_key_sha256": key_sha256(public),
    }
    manifest_bytes = _canonical(manifest)
    signature = _canonical(
        {
            "algorithm": "Ed25519",
            "key_sha256": key_sha256(public),
            "value": base64.b64encode(signer.sign(manifest_bytes)).decode(),
        }
    )
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    data = _zip([(MANIFEST, manifest_bytes), (SIGNATURE, signature), (PUBLIC_KEY, pem), *sorted(files.items())])
    if path is not None:
        path = Path(path)
        temporary = path.with_name(f".{path.name}.partial")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    digest = hashlib.sha256(data).hexdigest()
    d.audit.record(
        AuditEvent(
            name=EventName.COMPLIANCE_PACK_CREATE,
            channel=principal.channel,
            actor=principal.id,
            operation="report pack",
            counts={"files": len(files), "omitted": len(omitted)},
            fingerprint=digest,
        )
    )
    return Pack(path, data, digest, sorted(files), omitted, report)


def _public_key(given: Path | Ed25519PublicKey | bytes) -> Ed25519PublicKey:
    if isinstance(given, Ed25519PublicKey):
        return given
    pem = given if isinstance(given, bytes) else Path(given).read_bytes()
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise SageVaultError("the public key is not a PEM Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SageVaultError("the public key is not an Ed25519 key")
    return key


def _files(contents: dict[str, bytes]) -> list[str]:
    """What is wrong with the files against the (signed) manifest."""
    try:
        manifest = json.loads(contents[MANIFEST])
        listed = {f["name"]: f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError):
        return ["the manifest cannot be read"]
    problems = [] if manifest.get("format") == PACK_FORMAT else ["the manifest is not a SageVault evidence pack's"]
    for name, entry in sorted(listed.items()):
        content = contents.get(name)
        if content is None:
            problems.append(f"{name} is listed in the manifest but missing")
        elif hashlib.sha256(content).hexdigest() != entry.get("sha256") or len(content) != entry.get("size"):
            problems.append(f"{name} does not match its SHA-256 in the manifest: it was changed")
    extra = sorted(set(contents) - set(listed) - set(SIGNED))
    return problems + [f"{name} is in the zip but not in the manifest" for name in extra]


def _read_bounded(source: Path | bytes) -> bytes | None:
    """The pack's bytes, or None when the file is larger than any evidence pack (its size is
    checked before anything is read)."""
    if isinstance(source, bytes):
        return source if len(source) <= MAX_PACK_BYTES else None
    with Path(source).open("rb") as fh:
        if os.fstat(fh.fileno()).st_size > MAX_PACK_BYTES:
            return None
        raw = fh.read(MAX_PACK_BYTES + 1)
    return raw if len(raw) <= MAX_PACK_BYTES else None


def _layout(infos: list[zipfile.ZipInfo], size: int) -> list[str]:
    """What is wrong with the entries' headers, read before any entry is: the canonical layout is
    stored (never compressed), so an entry is never larger than the file that holds it."""
    if len(infos) > MAX_PACK_ENTRIES:
        return [f"the zip holds more than {MAX_PACK_ENTRIES} entries: not an evidence pack"]
    problems = []
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        problems.append("an entry is compressed: an evidence pack is stored, never compressed (refused unread)")
    declared = sum(max(i.file_size, i.compress_size) for i in infos)
    if any(i.file_size != i.compress_size for i in infos) or declared > size:
        problems.append("the entries' headers declare more bytes than the file holds (refused unread)")
    return problems


def verify_pack(source: Path | bytes, public_key: Path | Ed25519PublicKey | bytes) -> tuple[bool, list[str]]:
    """Check a pack offline against `public_key`, the key the verifier trusts (never the key
    inside the pack, which only a fingerprint shows): the embedded key is that key, the manifest's
    signature verifies with it, every file's SHA-256 and size, no file missing or extra, and the
    zip's bytes exactly the canonical layout of its contents. The file's size and every entry's
    header are checked before any entry is read. Returns (valid, problems)."""
    key = _public_key(public_key)  # a key that cannot be read is the caller's error, not the pack's
    raw = _read_bounded(source)
    if raw is None:
        return False, ["the file is larger than any evidence pack"]
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        infos = zf.infolist()
        layout = _layout(infos, len(raw))
        if layout:
            return False, layout
        names = [i.filename for i in infos]
        contents = {name: zf.read(name) for name in names}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        return False, [f"not a readable zip ({type(exc).__name__}): the pack is damaged"]
    problems: list[str] = []
    if len(set(names)) != len(names):
        problems.append("the zip holds two entries with the same name")
    missing_signed = [n for n in SIGNED if n not in contents]
    if missing_signed:
        return False, [*problems, "the pack has no " + ", ".join(missing_signed)]
    try:
        embedded = _public_key(contents[PUBLIC_KEY])
    except SageVaultError:
        embedded = None
    if embedded is None or key_sha256(embedded) != key_sha256(key):
        problems.append("the key inside the pack is not the trusted public key: the pack was re-signed or changed")
    try:
        signature = json.loads(contents[SIGNATURE])
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (ValueError, AttributeError) as exc:
        return False, [*problems, f"the signature cannot be read ({type(exc).__name__})"]
    if signature.get("key_sha256") != key_sha256(key):
        problems.append("the manifest was signed with another key than the trusted one")
    if not verify_signature(key, value, contents[MANIFEST]):
        return False, [*problems, "the manifest's signature does not verify: the manifest was changed or not signed"]
    problems += _files(contents)
    if not problems and _zip([(n, contents[n]) for n in names]) != raw:
        problems.append("the zip's bytes differ from the canonical layout of its contents: the file was changed")
    return not problems, problems


def embedded_key_sha256(source: Path | bytes) -> str | None:
    """The SHA-256 of the key inside a pack (shown as a fingerprint, never trusted), or None."""
    raw = _read_bounded(source)
    if raw is None:
        return None
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        info = zf.getinfo(PUBLIC_KEY)
        if _layout([info], len(raw)):
            return None
        return key_sha256(_public_key(zf.read(info)))
    except (KeyError, SageVaultError, zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        return None
