"""Provenance reading on hostile files: N images with mutated metadata, read one by one; no crash allowed.

    python benchmarks/provenance.py                  # 2000 files in a temporary folder
    python benchmarks/provenance.py --files 500 --seed 1 --out /tmp/provenance.json

Base files (made here): a C2PA-signed JPEG, PNG and WebP (a throw-away ES256 certificate; only with
c2pa-python and cryptography installed), a PNG with Stable Diffusion ``parameters``, JPEGs with an XMP
digital source type and with EXIF Make/Model, a WebP with XMP and EXIF, and a WebP and a PNG with a stub
JUMBF box (a C2PA description, no manifest: these two have ``error`` set even unmutated). Each file is
one of them with one mutation: truncated anywhere, random bytes written over its metadata (EXIF, XMP,
JUMBF/C2PA, text chunks), an oversized or garbage XMP packet, a malformed EXIF block, garbage C2PA/JUMBF
box bytes, or none. Every file is read with :func:`facecheck.provenance.read_provenance` from its path;
the report: crashes (an exception out of the reader: must be 0), files with ``error`` set, the summaries,
and the median and p95 milliseconds per file (overall and per mutation). A crash inside the C2PA library's
native code would end the process: faulthandler then prints where.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import faulthandler
import io
import json
import random
import statistics
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

from PIL import Image, PngImagePlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facecheck.provenance import SUMMARIES, read_provenance

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
XMP_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"


def _pixels(rng: random.Random, size: int = 64) -> Image.Image:
    return Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))


def _jpeg(rng: random.Random, **save: object) -> bytes:
    buffer = io.BytesIO()
    _pixels(rng).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def _segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _xmp(term: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'Iptc4xmpExt:DigitalSourceType="{IPTC}{term}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def _exif() -> bytes:
    exif = Image.Exif()
    exif[271], exif[272], exif[305] = "Canon", "Canon EOS R5", "Firmware 1.8"
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00a comment"
    return exif.tobytes()


def _png(rng: random.Random, chunks: list[tuple[bytes, bytes]]) -> bytes:
    buffer = io.BytesIO()
    _pixels(rng).save(buffer, "PNG")
    data = buffer.getvalue()
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks
    )
    return data[:33] + extra + data[33:]  # right after IHDR, where PIL puts text chunks too


def _webp(rng: random.Random, chunks: list[tuple[bytes, bytes]]) -> bytes:
    buffer = io.BytesIO()
    _pixels(rng).save(buffer, "WEBP")
    body = buffer.getvalue()[12:]
    for kind, payload in chunks:
        body += kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _signed(rng: random.Random) -> dict[str, bytes]:
    """A JPEG, a PNG and a WebP with a C2PA manifest signed by a throw-away certificate (none without
    c2pa-python and cryptography)."""
    try:
        import c2pa
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        return {}
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "benchmark CA")])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "benchmark signer")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(x509, signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(x509, signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, private, None))
    action = {"action": "c2pa.created", "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}
    manifest = {"claim_generator_info": [{"name": "benchmark"}], "assertions": [
        {"label": "c2pa.actions", "data": {"actions": [action]}}
    ]}  # fmt: skip
    signed = {}
    for fmt, mime in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        source, out = io.BytesIO(), io.BytesIO()
        _pixels(rng).save(source, fmt)
        source.seek(0)
        with c2pa.Builder(manifest) as builder:
            builder.sign(signer, mime, source, out)
        signed[f"c2pa-{fmt.lower()}"] = out.getvalue()
    return signed


def _usage(x509, signing: bool):
    """Key usage: digital signatures for the signer, certificate signing for the CA (C2PA checks both)."""
    off = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "encipher_only")
    return x509.KeyUsage(
        digital_signature=signing,
        key_cert_sign=not signing,
        crl_sign=not signing,
        decipher_only=False,
        **dict.fromkeys(off, False),
    )


def base_files(rng: random.Random) -> dict[str, bytes]:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a face\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    buffer = io.BytesIO()
    _pixels(rng).save(buffer, "PNG", pnginfo=info)
    jumbf = struct.pack(">I", 40) + b"jumb" + struct.pack(">I", 32) + b"jumd" + b"c2pa" + bytes(24)
    bases = {
        "sd-png": buffer.getvalue(),
        "xmp-jpeg": _segment(_jpeg(rng), 0xE1, XMP_SIGNATURE + _xmp("trainedAlgorithmicMedia")),
        "camera-jpeg": _jpeg(rng, exif=_exif()),
        "webp": _webp(rng, [(b"EXIF", _exif()), (b"XMP ", _xmp("digitalCapture"))]),
        # A JUMBF box with a C2PA description and no manifest: an error even unmutated.
        "stub-jumbf-webp": _webp(rng, [(b"C2PA", jumbf)]),
        "stub-jumbf-png": _png(rng, [(b"caBX", jumbf)]),
    }
    return bases | _signed(rng)


def _metadata_spans(data: bytes) -> list[tuple[int, int]]:
    """Where the metadata lies in a file: EXIF, XMP, JUMBF (APP1/APP11, PNG text/caBX/eXIf, WebP chunks)."""
    spans = []
    for needle in (b"Exif\x00\x00", XMP_SIGNATURE, b"JP\x00", b"jumb", b"tEXt", b"iTXt", b"caBX", b"EXIF", b"XMP "):
        start = data.find(needle)
        if start >= 0:
            spans.append((start, min(len(data), start + 400)))
    return spans or [(0, min(len(data), 200))]


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    if kind == "none":
        return data
    if kind == "truncated":
        return data[: rng.randrange(1, len(data))]
    if kind == "scrambled":  # random bytes over part of the metadata
        start, end = rng.choice(_metadata_spans(data))
        at = rng.randrange(start, end)
        count = rng.randint(1, 64)
        return data[:at] + rng.randbytes(min(count, len(data) - at)) + data[at + count :]
    jpeg = _jpeg(rng)
    if kind == "oversized-xmp":
        roll = rng.random()
        if roll < 0.5:  # a full APP1 segment of XML that never closes
            return _segment(jpeg, 0xE1, XMP_SIGNATURE + b"<x:xmpmeta>" + b"A" * 65000)
        if roll < 0.75:  # 1.1 MB, over the reader's 1 MiB limit
            return _png(rng, [(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00<x>" + b" " * 1_100_000)])
        bomb = zlib.compress(b"<x>" + b" " * 50_000_000, 9)  # 50 MB of XMP in a few tens of kB
        return _png(rng, [(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + bomb)])
    if kind == "garbage-xmp":
        return _segment(jpeg, 0xE1, XMP_SIGNATURE + rng.randbytes(rng.randint(0, 2000)))
    if kind == "malformed-exif":
        tiff = bytearray(_exif())
        for _ in range(rng.randint(1, 8)):
            tiff[rng.randrange(6, len(tiff))] = rng.randrange(256)
        return _segment(jpeg, 0xE1, bytes(tiff))
    if kind == "garbage-c2pa":
        box = rng.randbytes(rng.randint(0, 3000))
        if rng.random() < 0.5:
            box = struct.pack(">I", rng.randint(0, 2**32 - 1)) + b"jumb" + box
        where = rng.choice(("jpeg", "png", "webp"))
        if where == "jpeg":
            return _segment(jpeg, 0xEB, b"JP\x00\x01\x00\x00\x00\x01" + box)
        return _png(rng, [(b"caBX", box)]) if where == "png" else _webp(rng, [(b"C2PA", box)])
    raise ValueError(kind)


MUTATIONS = ("none", "truncated", "scrambled", "oversized-xmp", "garbage-xmp", "malformed-exif", "garbage-c2pa")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args(argv)
    faulthandler.enable()
    rng = random.Random(args.seed)
    bases = base_files(rng)
    times: dict[str, list[float]] = collections.defaultdict(list)
    errors, summaries, crashes = collections.Counter(), collections.Counter(), []
    with tempfile.TemporaryDirectory(prefix="facecheck-provenance-") as folder:
        plan = []
        for index in range(args.files):
            base, kind = rng.choice(sorted(bases)), MUTATIONS[index % len(MUTATIONS)]
            path = Path(folder) / f"{index:05d}-{base}-{kind}.bin"
            path.write_bytes(mutate(bases[base], kind, rng))
            plan.append((path, kind))
        for path, kind in plan:
            started = time.perf_counter()
            try:
                found = read_provenance(path)
            except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
                crashes.append(f"{path.name}: {type(exc).__name__}: {exc}")
                continue
            finally:
                times[kind].append(time.perf_counter() - started)
            assert found.summary in SUMMARIES
            errors[kind] += found.error is not None
            summaries[found.summary] += 1
    every = sorted(t for kind_times in times.values() for t in kind_times)
    report = {
        "files": args.files,
        "bases": sorted(bases),
        "crashes": len(crashes),
        "crash_examples": crashes[:5],
        "with_error": sum(errors.values()),
        "summaries": dict(summaries),
        "median_ms": round(statistics.median(every) * 1000, 3),
        "p95_ms": round(every[int(0.95 * (len(every) - 1))] * 1000, 3),
        "max_ms": round(every[-1] * 1000, 3),
        "by_mutation": {
            kind: {
                "files": len(times[kind]),
                "with_error": errors[kind],
                "median_ms": round(statistics.median(times[kind]) * 1000, 3),
                "p95_ms": round(sorted(times[kind])[int(0.95 * (len(times[kind]) - 1))] * 1000, 3),
            }
            for kind in MUTATIONS
            if times[kind]
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
