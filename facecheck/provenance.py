"""What an image file declares about itself: C2PA Content Credentials, IPTC digital source type, EXIF, generator text.

Shown beside (never inside) the pixel verdict. It is read from the file's bytes
alone, once, by walking its header segments and chunks (JPEG, PNG, WebP); no
pixel is decoded, and nothing here imports torch. Four kinds of evidence:

- ``c2pa``: the C2PA manifest store (JPEG APP11, PNG ``caBX``, WebP ``C2PA``), read
  and validated with the ``c2pa-python`` library (extra ``facecheck[provenance]``)
  only when the file carries one: claim generator, signer and issuer, the
  library's validation state, the actions and their ``digitalSourceType``. The
  library is given no trust list unless ``FACECHECK_C2PA_TRUST_ANCHORS`` names a
  PEM file of trust anchors, so a good signature reads ``untrusted``, never
  ``trusted``; a signature or hash that does not check out reads ``invalid``.
  Nothing is fetched over the network (no remote manifests, no OCSP).
- ``digital_source_type``: the IPTC term in the file's XMP packet (JPEG APP1,
  PNG iTXt ``XML:com.adobe.xmp``, WebP ``XMP ``), e.g.
  ``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia``.
- ``exif``: Make, Model and Software (the EXIF block's first directory).
- ``generator_text``: text that image generators write (PNG text chunks, or EXIF
  UserComment in JPEG/WebP): a Stable Diffusion web UI's ``parameters``,
  ComfyUI's ``prompt``/``workflow``, InvokeAI's and Fooocus's metadata, a
  ``Software``/``Source`` naming e.g. NovelAI, Adobe Firefly, DALL·E or Midjourney.

``summary`` is one of :data:`SUMMARIES`, the first that applies:

- ``declared generated``: a C2PA ``c2pa.created`` action or the XMP says
  ``trainedAlgorithmicMedia`` or ``algorithmicMedia``, or generator text was found;
- ``declared edited``: a source type of a composite or an enhancement
  (``compositeWithTrainedAlgorithmicMedia`` included: a capture with generated
  parts is reported as edited, and the exact term stays in the evidence),
  ``digitalCreation``, a generated source type on an action other than
  ``c2pa.created`` (content placed into an image), or a C2PA editing action;
- ``camera``: ``digitalCapture`` (or another capture term), or an EXIF Make or Model;
- ``nothing declared``.

A C2PA manifest counts for the summary whatever its validation says; its
``validation`` stays in the evidence. ``error`` is None, or one line naming what
was malformed (truncated file, garbage XMP or EXIF, a C2PA store the library
refuses): reading never raises. And always :data:`CAVEAT`: metadata is easy to
strip and to forge, and its absence proves nothing.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

GENERATED, EDITED, CAMERA, NOTHING = "declared generated", "declared edited", "camera", "nothing declared"
SUMMARIES = (GENERATED, EDITED, CAMERA, NOTHING)
CAVEAT = (
    "What a file declares about itself is easy to strip and to forge: it is a claim, not proof, and its "
    "absence proves nothing. Only a C2PA signature validated against a trust list ties a claim to its signer."
)
TRUST_ANCHORS_ENV = "FACECHECK_C2PA_TRUST_ANCHORS"

# IPTC digital source types (the last part of http://cv.iptc.org/newscodes/digitalsourcetype/TERM) by summary.
GENERATED_TERMS = frozenset({"trainedAlgorithmicMedia", "algorithmicMedia"})
EDITED_TERMS = frozenset(
    {
        "compositeWithTrainedAlgorithmicMedia",
        "algorithmicallyEnhanced",
        "compositeSynthetic",
        "composite",
        "compositeCapture",
        "minorHumanEdits",
        "digitalCreation",
        "digitalArt",  # the older name of digitalCreation
    }
)
CAMERA_TERMS = frozenset({"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print"})
# C2PA actions that declare a change to the content (c2pa.created, opened, published, ... do not).
EDIT_ACTIONS = frozenset(
    {"c2pa.edited", "c2pa.filtered", "c2pa.drawing", "c2pa.color_adjustments", "c2pa.cropped", "c2pa.resized"}
)

# Generators named in free text (PNG Software or Source text, EXIF Software).
GENERATOR_NAMES = (
    ("NovelAI", re.compile(r"novel\s?ai", re.I)),
    ("Adobe Firefly", re.compile(r"firefly", re.I)),
    ("DALL·E", re.compile(r"dall[\s·\-_.]?e\b", re.I)),
    ("Midjourney", re.compile(r"midjourney", re.I)),
    ("Stable Diffusion", re.compile(r"stable[\s_-]?diffusion", re.I)),
    ("ComfyUI", re.compile(r"comfyui", re.I)),
    ("Ideogram", re.compile(r"ideogram", re.I)),
    ("Leonardo.Ai", re.compile(r"leonardo\.ai", re.I)),
    ("Imagen", re.compile(r"\bimagen\b", re.I)),
)
# PNG text keys that generators write, with a check that the text is theirs.
SD_PARAMETERS = re.compile(r"\b(Steps|Sampler|CFG scale|Seed|Model hash):\s*\S")
GENERATOR_KEYS: dict[str, tuple[str, Any]] = {
    "parameters": ("Stable Diffusion web UI", SD_PARAMETERS.search),
    "prompt": ("ComfyUI", lambda text: text.lstrip().startswith("{")),
    "workflow": ("ComfyUI", lambda text: text.lstrip().startswith("{")),
    "invokeai_metadata": ("InvokeAI", lambda text: True),
    "invokeai_graph": ("InvokeAI", lambda text: True),
    "sd-metadata": ("InvokeAI", lambda text: True),
    "dream": ("InvokeAI", lambda text: True),
    "fooocus_scheme": ("Fooocus", lambda text: True),
}
NAMING_KEYS = ("software", "source")
XMP_KEYS = ("xml:com.adobe.xmp",)

EXCERPT = 300  # characters of a text kept in the evidence
ERROR_LIMIT = 600  # characters of the error line
TEXT_LIMIT = 64 * 1024  # bytes of a compressed text chunk inflated
XMP_LIMIT = 1024 * 1024  # an XMP packet past this is not read (reported as an error)
MAX_CHUNKS = 100_000
READ_LIMIT = 256 * 1024 * 1024  # a larger file is not read for its metadata
JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IPTC_PREFIX = re.compile(r"^https?://cv\.iptc\.org/newscodes/digitalsourcetype/", re.I)


@dataclass
class Provenance:
    """What one file declares about itself; see the module's documentation for each field."""

    summary: str = NOTHING
    c2pa: dict[str, Any] | None = None
    digital_source_type: str | None = None
    exif: dict[str, str | None] | None = None
    generator_text: dict[str, Any] | None = None
    error: str | None = None
    caveat: str = CAVEAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Found:
    """Raw pieces gathered while walking a file's segments or chunks."""

    mime: str | None = None
    exif: list[bytes] = field(default_factory=list)
    xmp: list[bytes] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    has_c2pa: bool = False
    problems: list[str] = field(default_factory=list)


def read_provenance(source: str | Path | bytes) -> Provenance:
    """The provenance of a file (path) or of its bytes; never raises (problems go to ``error``)."""
    try:
        data = source if isinstance(source, (bytes, bytearray)) else _read(Path(source))
    except (OSError, ValueError) as exc:
        return Provenance(error=_one_line(f"the file was not read for its metadata: {exc}"))
    try:
        return _provenance(bytes(data))
    except Exception as exc:  # noqa: BLE001 - a reader of hostile files must not fail the prediction beside it
        return Provenance(error=_one_line(f"metadata could not be read: {type(exc).__name__}: {exc}"))


def _read(path: Path) -> bytes:
    from facecheck.data.images import open_regular_file  # a FIFO named x.jpg must not block the reader
    from facecheck.errors import DataError

    try:
        with open_regular_file(path) as handle:
            data = handle.read(READ_LIMIT + 1)
    except DataError as exc:
        raise ValueError(str(exc)) from None
    if len(data) > READ_LIMIT:
        raise ValueError(f"the file is over {READ_LIMIT // 2**20} MiB")
    return data


def _provenance(data: bytes) -> Provenance:
    found = _walk(data)
    result = Provenance()
    if found.exif:
        result.exif, user_comment = _exif(found.exif[0], found.problems)
        if user_comment:
            found.texts.setdefault("EXIF UserComment", user_comment)
    for packet in found.xmp:
        result.digital_source_type = result.digital_source_type or _clean(_xmp_source_type(packet, found.problems))
    result.generator_text = _generator_text(found.texts, result.exif)
    if found.has_c2pa:
        result.c2pa = _c2pa(data, found.mime, found.problems)
    result.summary = _summary(result)
    if found.problems:
        result.error = _clean(_one_line("; ".join(dict.fromkeys(found.problems))), ERROR_LIMIT)
    return result


# --- walking the container ---------------------------------------------------------------------------------------


def _walk(data: bytes) -> _Found:
    if data.startswith(b"\xff\xd8\xff"):
        return _walk_jpeg(data)
    if data.startswith(PNG_SIGNATURE):
        return _walk_png(data)
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _walk_webp(data)
    return _Found()  # BMP and others carry none of this


def _walk_jpeg(data: bytes) -> _Found:
    found = _Found(mime="image/jpeg")
    pos, end = 2, len(data)
    while True:
        while pos < end and data[pos] == 0xFF and pos + 1 < end and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > end:
            found.problems.append("the JPEG ends inside its header segments (truncated)")
            return found
        if data[pos] != 0xFF:
            found.problems.append(f"the JPEG's header segments are malformed at byte {pos}")
            return found
        marker = data[pos + 1]
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xD9:
            return found
        if pos + 4 > end:
            found.problems.append("the JPEG ends inside its header segments (truncated)")
            return found
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if length < 2 or pos + 2 + length > end:
            found.problems.append(f"a JPEG segment (marker {marker:02X}) runs past the end of the file (truncated)")
            return found
        payload = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            found.exif.append(payload[6:])
        elif marker == 0xE1 and payload.startswith(JPEG_XMP):
            found.xmp.append(payload[len(JPEG_XMP) :])
        elif marker == 0xEB and payload.startswith(b"JP"):
            found.has_c2pa = True  # JUMBF (ISO 19566-5) in APP11: where C2PA stores its manifests
        if marker == 0xDA:  # start of scan: the headers are done; the image data must end with EOI
            if data.find(b"\xff\xd9", pos + 2 + length) < 0:
                found.problems.append("the JPEG has no end-of-image marker (truncated)")
            return found
        pos += 2 + length


def _walk_png(data: bytes) -> _Found:
    found = _Found(mime="image/png")
    pos, end = len(PNG_SIGNATURE), len(data)
    for _ in range(MAX_CHUNKS):
        if pos + 8 > end:
            found.problems.append("the PNG ends before its IEND chunk (truncated)")
            return found
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > end:
            name = kind.decode("latin-1")
            found.problems.append(f"the PNG chunk {name!r} runs past the end of the file (truncated)")
            return found
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return found
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            crc = struct.unpack_from(">I", data, pos + 8 + length)[0]
            if zlib.crc32(data[pos + 4 : pos + 8 + length]) != crc:
                found.problems.append(f"the PNG {kind.decode()} chunk fails its CRC check (corrupt)")
            elif kind == b"eXIf":
                found.exif.append(body[6:] if body.startswith(b"Exif\x00\x00") else body)
            else:
                _png_text(kind, body, found)
        elif kind == b"caBX":
            found.has_c2pa = True
        pos += 12 + length
    found.problems.append(f"the PNG has more than {MAX_CHUNKS} chunks: the rest was not read")
    return found


def _png_text(kind: bytes, body: bytes, found: _Found) -> None:
    key, sep, rest = body.partition(b"\x00")
    name = key.decode("latin-1")
    try:
        if not sep or not key:
            raise ValueError("no keyword")
        limit = XMP_LIMIT + 1 if name.lower() in XMP_KEYS else TEXT_LIMIT
        if kind == b"tEXt":
            raw = rest
        elif kind == b"zTXt":
            raw = _inflate(rest[1:], limit)
        else:  # iTXt: compression flag, method, language tag, translated keyword, then UTF-8 text
            flag, rest = rest[:1], rest[2:]
            _language, _, rest = rest.partition(b"\x00")
            _translated, _, raw = rest.partition(b"\x00")
            raw = _inflate(raw, limit) if flag == b"\x01" else raw
    except (ValueError, zlib.error) as exc:
        found.problems.append(f"the PNG {kind.decode()} chunk {name!r} is malformed ({exc})")
        return
    if name.lower() in XMP_KEYS:
        found.xmp.append(raw)
    else:
        found.texts.setdefault(name, raw.decode("utf-8" if kind == b"iTXt" else "latin-1", "replace"))


def _inflate(raw: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of zlib data (a bomb stops there)."""
    return zlib.decompressobj().decompress(raw, limit)


def _walk_webp(data: bytes) -> _Found:
    found = _Found(mime="image/webp")
    declared = struct.unpack_from("<I", data, 4)[0] + 8
    end = min(len(data), declared)
    if declared > len(data):
        found.problems.append("the WebP file is shorter than its header says (truncated)")
    pos = 12
    for _ in range(MAX_CHUNKS):
        if pos + 8 > end:
            return found
        kind, length = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + length > end:
            name = kind.decode("latin-1")
            found.problems.append(f"the WebP chunk {name!r} runs past the end of the file (truncated)")
            return found
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"EXIF":
            found.exif.append(body[6:] if body.startswith(b"Exif\x00\x00") else body)
        elif kind == b"XMP ":
            found.xmp.append(body)
        elif kind == b"C2PA":
            found.has_c2pa = True
        pos += 8 + length + (length & 1)
    found.problems.append(f"the WebP has more than {MAX_CHUNKS} chunks: the rest was not read")
    return found


# --- reading the pieces ------------------------------------------------------------------------------------------


def _exif(tiff: bytes, problems: list[str]) -> tuple[dict[str, str | None] | None, str | None]:
    """EXIF Make, Model, Software (None when none is set) and the UserComment text.

    Read here rather than with Pillow's ``Image.Exif``: Pillow reports a corrupt block only through
    ``warnings``, and catching those changes process-wide state that other threads (the service decodes
    uploads in a pool, where the pixel reader turns DecompressionBombWarning into an error) rely on.
    """
    try:
        if not tiff.startswith((b"II*\x00", b"MM\x00*")):
            raise ValueError("no TIFF header")
        order = "<" if tiff[:2] == b"II" else ">"
        first = _ifd(tiff, struct.unpack_from(order + "I", tiff, 4)[0], order)
        values = {name: _ascii(tiff, first.get(tag), order) for name, tag in EXIF_TAGS}
        comment = None
        if 0x8769 in first:  # the Exif sub-IFD, where UserComment lives
            pointer = _value(tiff, first[0x8769], order)
            if len(pointer) != 4:
                raise ValueError("bad Exif IFD pointer")
            exif_ifd = _ifd(tiff, struct.unpack(order + "I", pointer)[0], order)
            if 0x9286 in exif_ifd:
                comment = _user_comment(_value(tiff, exif_ifd[0x9286], order))
    except (ValueError, struct.error) as exc:
        problems.append(f"the EXIF block is malformed ({exc})")
        return None, None
    return (values if any(values.values()) else None), comment


EXIF_TAGS = (("make", 0x010F), ("model", 0x0110), ("software", 0x0131))
TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def _ifd(tiff: bytes, offset: int, order: str) -> dict[int, tuple[int, int, int]]:
    """One TIFF directory: tag -> (type, count, offset of the entry's value field)."""
    if offset < 8 or offset + 2 > len(tiff):
        raise ValueError(f"a directory offset ({offset}) is outside the block")
    count = struct.unpack_from(order + "H", tiff, offset)[0]
    if offset + 2 + 12 * count > len(tiff):
        raise ValueError(f"a directory of {count} entries runs past the end of the block")
    entries = {}
    for index in range(count):
        tag, kind, length = struct.unpack_from(order + "HHI", tiff, offset + 2 + 12 * index)
        entries.setdefault(tag, (kind, length, offset + 2 + 12 * index + 8))
    return entries


def _value(tiff: bytes, entry: tuple[int, int, int], order: str) -> bytes:
    """The bytes of an entry's value (inline when they fit in 4 bytes, else where its offset points)."""
    kind, count, field_at = entry
    size = TIFF_TYPE_SIZES.get(kind, 1) * count
    if size <= 4:
        return tiff[field_at : field_at + size]
    start = struct.unpack_from(order + "I", tiff, field_at)[0]
    if start + size > len(tiff):
        raise ValueError(f"a value of {size} bytes at offset {start} runs past the end of the block")
    return tiff[start : start + size]


def _ascii(tiff: bytes, entry: tuple[int, int, int] | None, order: str) -> str | None:
    return None if entry is None else _clean(_value(tiff, entry, order).split(b"\x00", 1)[0])


def _user_comment(value: Any) -> str | None:
    """EXIF UserComment: an 8-byte character code, then the text (where web UIs put generation parameters)."""
    if not isinstance(value, bytes) or len(value) <= 8:
        return _clean(value, TEXT_LIMIT) if isinstance(value, str) else None
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        # The code does not say the byte order; text in either shows as zero bytes at odd or at even places.
        order = "utf-16-be" if body[:1] == b"\x00" or body[1::2].count(0) < body[0::2].count(0) else "utf-16-le"
        return body.decode(order, "replace").strip("\x00 ")
    return body.decode("utf-8", "replace").strip("\x00 ")


def _xmp_source_type(packet: bytes, problems: list[str]) -> str | None:
    """The IPTC digital source type in an XMP packet; a packet that is not well-formed XMP is a problem."""
    if len(packet) > XMP_LIMIT:
        problems.append(f"an XMP packet of {len(packet)} bytes is over the {XMP_LIMIT} byte limit: not read")
        return None
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        problems.append("an XMP packet declares a DTD (XMP never does): not read")
        return None
    try:
        root = ElementTree.fromstring(packet.rstrip(b"\x00"))
    except ElementTree.ParseError as exc:
        problems.append(f"an XMP packet is not well-formed XML ({exc})")
        return None
    resource = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}resource"
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("}DigitalSourceType") and value.strip():
                return value.strip()
        if isinstance(element.tag, str) and element.tag.endswith("}DigitalSourceType"):
            value = (element.text or "").strip() or element.attrib.get(resource, "").strip()
            if value:
                return value
    return None


def _generator_text(texts: dict[str, str], exif: dict[str, str | None] | None) -> dict[str, Any] | None:
    """Text that names an image generator: ``{"generator": NAME, "text": {KEY: EXCERPT, ...}}``, or None."""
    generator, kept = None, {}
    for key, text in texts.items():
        lowered = key.lower()
        if lowered in GENERATOR_KEYS:
            name, looks_right = GENERATOR_KEYS[lowered]
            if looks_right(text):
                generator = generator or name
                kept[key] = _clean(text)
        elif lowered == "exif usercomment" and SD_PARAMETERS.search(text):
            generator = generator or "Stable Diffusion web UI"
            kept[key] = _clean(text)
        elif lowered in NAMING_KEYS and (named := _named_generator(text)):
            generator = generator or named
            kept[key] = _clean(text)
    if generator == "NovelAI" and "Comment" in texts:
        kept["Comment"] = _clean(texts["Comment"])  # NovelAI's generation settings (JSON)
    software = (exif or {}).get("software")
    if software and (named := _named_generator(software)):
        generator = generator or named
        kept["EXIF Software"] = software
    return {"generator": generator, "text": kept} if kept else None


def _named_generator(text: str) -> str | None:
    return next((name for name, pattern in GENERATOR_NAMES if pattern.search(text[:TEXT_LIMIT])), None)


def _c2pa(data: bytes, mime: str | None, problems: list[str]) -> dict[str, Any]:
    """The C2PA manifest store, read and validated by c2pa-python (without network access)."""
    evidence: dict[str, Any] = {
        "validation": "not checked",
        "validation_state": None,
        "claim_generator": None,
        "signer": None,
        "issuer": None,
        "signed_at": None,
        "digital_source_type": None,
        "actions": [],
        "failures": [],
        "message": None,
    }
    try:
        import c2pa
    except (ImportError, OSError):  # not installed, or its native library does not load here
        from facecheck.extras import missing_extra_message

        evidence["message"] = "a C2PA manifest store is present but was not read: " + missing_extra_message(
            "c2pa", "provenance"
        )
        return evidence
    try:
        context = _c2pa_context(c2pa)
    except OSError as exc:
        evidence["message"] = _one_line(f"{TRUST_ANCHORS_ENV}: the trust anchors could not be read ({exc})")
        return evidence
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
    except Exception as exc:  # noqa: BLE001 - C2paError and its kinds, or JSON the library should not give
        evidence["validation"] = "unreadable"
        evidence["message"] = _one_line(str(exc))[:200]
        problems.append(_one_line(f"the C2PA manifest store could not be read ({evidence['message']})"))
        return evidence
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest")) or {}
    signature = manifest.get("signature_info") or {}
    state = store.get("validation_state")
    statuses = store.get("validation_status") or []
    failures = list(statuses) + list(
        ((store.get("validation_results") or {}).get("activeManifest") or {}).get("failure") or []
    )
    evidence |= {
        "validation_state": state,
        "validation": {"Trusted": "trusted", "Valid": "untrusted"}.get(state, "invalid"),
        "claim_generator": _claim_generator(manifest),
        "signer": signature.get("common_name"),
        "issuer": signature.get("issuer"),
        "signed_at": signature.get("time"),
        "actions": _actions(manifest)[:20],
        "failures": sorted({str(entry.get("code")) for entry in failures if isinstance(entry, dict)}),
    }
    sources = [action["digitalSourceType"] for action in evidence["actions"] if action.get("digitalSourceType")]
    created = [a["digitalSourceType"] for a in evidence["actions"] if a["action"] == "c2pa.created"]
    created = [source for source in created if source]
    evidence["digital_source_type"] = next(iter(created + sources), None)
    return evidence


def _c2pa_context(c2pa: Any) -> Any:
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    anchors = os.environ.get(TRUST_ANCHORS_ENV)
    if anchors:
        settings["trust"] = {"trust_anchors": Path(anchors).expanduser().read_text(encoding="utf-8")}
    return c2pa.Context(c2pa.Settings.from_dict(settings))


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    if manifest.get("claim_generator"):
        return str(manifest["claim_generator"])
    parts = [
        " ".join(str(info[key]) for key in ("name", "version") if info.get(key))
        for info in manifest.get("claim_generator_info") or []
        if isinstance(info, dict)
    ]
    return ", ".join(part for part in parts if part) or None


def _actions(manifest: dict[str, Any]) -> list[dict[str, str | None]]:
    actions = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            if not isinstance(action, dict):
                continue
            agent = action.get("softwareAgent")
            agent = _text(agent.get("name") if isinstance(agent, dict) else agent)
            actions.append(
                {
                    "action": str(action.get("action")),
                    "digitalSourceType": _text(action.get("digitalSourceType")),
                    "softwareAgent": agent,
                }
            )
    return actions


# --- the summary -------------------------------------------------------------------------------------------------


def _term(source_type: str | None) -> str:
    """``trainedAlgorithmicMedia`` of ``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia``."""
    return IPTC_PREFIX.sub("", source_type or "").rstrip("/").rsplit("/", 1)[-1]


def _summary(result: Provenance) -> str:
    terms = {_term(result.digital_source_type)}
    edited = False
    for action in (result.c2pa or {}).get("actions") or []:
        term = _term(action.get("digitalSourceType"))
        if term in GENERATED_TERMS and action["action"] != "c2pa.created":
            edited = True  # generated content placed into (or edited into) the image
        else:
            terms.add(term)
        edited = edited or action["action"] in EDIT_ACTIONS
    if terms & GENERATED_TERMS or result.generator_text:
        return GENERATED
    if edited or terms & EDITED_TERMS:
        return EDITED
    if terms & CAMERA_TERMS or (result.exif and (result.exif.get("make") or result.exif.get("model"))):
        return CAMERA
    return NOTHING


def _clean(value: Any, limit: int = EXCERPT) -> str | None:
    """A short printable excerpt of a metadata value (None for nothing)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in str(value)).strip("\x00 ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or None


def _text(value: Any) -> str | None:
    """A string from a manifest's JSON, or None where it holds something else."""
    return value if isinstance(value, str) and value else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
