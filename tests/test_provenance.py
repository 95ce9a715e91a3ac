"""What a file declares about itself (C2PA, IPTC digital source type, EXIF, generator text), beside the verdict."""

from __future__ import annotations

import datetime
import io
import json
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from facecheck.provenance import CAVEAT, SUMMARIES, read_provenance

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SD_PARAMETERS = (
    "portrait photo of a woman, 85mm\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689"
)


# --- fixtures: files made here -----------------------------------------------------------------------------------


def pixels(seed: int = 0, size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def plain_jpeg(seed: int = 0, **save: object) -> bytes:
    buffer = io.BytesIO()
    pixels(seed).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """``jpeg`` with one more marker segment right after SOI."""
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def xmp_packet(source_type: str, as_attribute: bool = False) -> bytes:
    ns = 'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
    inner = (
        f'<rdf:Description rdf:about="" {ns} Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"/>'
        if as_attribute
        else f'<rdf:Description rdf:about="" {ns}><Iptc4xmpExt:DigitalSourceType>{IPTC}{source_type}'
        "</Iptc4xmpExt:DigitalSourceType></rdf:Description>"
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">{inner}</rdf:RDF></x:xmpmeta>'
        + " " * 200
        + '<?xpacket end="w"?>'
    ).encode()


def xmp_jpeg(source_type: str, as_attribute: bool = False) -> bytes:
    return with_segment(plain_jpeg(), 0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp_packet(source_type, as_attribute))


def camera_jpeg() -> bytes:
    exif = Image.Exif()
    exif[271], exif[272], exif[305] = "Canon", "Canon EOS R5", "Firmware Version 1.8.1"
    return plain_jpeg(exif=exif.tobytes())


def sd_png(key: str = "parameters", text: str = SD_PARAMETERS) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, text)
    buffer = io.BytesIO()
    pixels().save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def png_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG with these (type, data) chunks placed before IEND."""
    buffer = io.BytesIO()
    pixels().save(buffer, "PNG")
    data = buffer.getvalue()
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks
    )
    return data[:-12] + extra + data[-12:]


def webp_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A simple (VP8) WebP with these RIFF chunks after its image chunk."""
    buffer = io.BytesIO()
    pixels().save(buffer, "WEBP")
    body = buffer.getvalue()[12:]
    for kind, payload in chunks:
        body += kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def stripped(data: bytes, fmt: str) -> bytes:
    """The same pixels re-saved as a fresh image: no metadata at all."""
    with Image.open(io.BytesIO(data)) as opened:
        image = Image.frombytes(opened.mode, opened.size, opened.convert(opened.mode).tobytes())
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_certificates() -> tuple[bytes, bytes, bytes]:
    """A throw-away CA and an ES256 end-entity certificate it signed: (chain PEM, key PEM, CA PEM)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facecheck tests"),
            ]
        )

    def usage(signing: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            (
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        return x509.KeyUsage(digital_signature=signing, key_cert_sign=not signing, crl_sign=not signing, **flags)

    def certificate(subject: str, issuer: str, key, issuer_key, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage(signing=not ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            ).add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("facecheck test CA", "facecheck test CA", ca_key, ca_key, ca=True)
    leaf = certificate("facecheck test signer", "facecheck test CA", key, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem, ca.public_bytes(pem)


test_certificates.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def signed() -> tuple[bytes, bytes]:
    """A JPEG with a C2PA manifest signed by a test certificate (declaring a generated image), and the CA PEM."""
    c2pa = pytest.importorskip("c2pa")
    chain, key, ca = test_certificates()
    manifest = {
        "claim_generator_info": [{"name": "facecheck-tests", "version": "1.0"}],
        "title": "signed.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [{"action": "c2pa.created", "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}]
                },
            }
        ],
    }
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(plain_jpeg()), out)
    return out.getvalue(), ca


# --- what each kind of file declares -----------------------------------------------------------------------------


def test_stable_diffusion_parameters_declare_generated():
    found = read_provenance(sd_png())
    assert found.summary == "declared generated" and found.error is None
    assert found.generator_text["generator"] == "Stable Diffusion web UI"
    assert "Steps: 20" in found.generator_text["text"]["parameters"]
    assert found.c2pa is None and found.exif is None and found.caveat == CAVEAT


@pytest.mark.parametrize(
    ("key", "text", "generator"),
    [
        ("prompt", '{"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}', "ComfyUI"),
        ("Software", "NovelAI", "NovelAI"),
        ("Software", "Adobe Firefly", "Adobe Firefly"),
        ("Software", "DALL·E 3", "DALL·E"),
    ],
)
def test_other_generators_text(key, text, generator):
    found = read_provenance(sd_png(key, text))
    assert found.summary == "declared generated" and found.generator_text["generator"] == generator


def test_ordinary_text_chunks_declare_nothing():
    assert read_provenance(sd_png("parameters", "exposure=1/100")).summary == "nothing declared"
    assert read_provenance(sd_png("Software", "GIMP 2.10")).summary == "nothing declared"


@pytest.mark.parametrize("as_attribute", [False, True])
def test_xmp_digital_source_type(as_attribute):
    generated = read_provenance(xmp_jpeg("trainedAlgorithmicMedia", as_attribute))
    assert generated.summary == "declared generated" and generated.error is None
    assert generated.digital_source_type == IPTC + "trainedAlgorithmicMedia"
    # A capture with generated parts (e.g. generative fill) is reported as edited; the exact term stays beside it.
    composite = read_provenance(xmp_jpeg("compositeWithTrainedAlgorithmicMedia", as_attribute))
    assert composite.summary == "declared edited"
    assert composite.digital_source_type == IPTC + "compositeWithTrainedAlgorithmicMedia"
    assert read_provenance(xmp_jpeg("digitalCapture", as_attribute)).summary == "camera"


def test_xmp_in_png_and_webp():
    itxt = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp_packet("trainedAlgorithmicMedia")
    assert read_provenance(png_with([(b"iTXt", itxt)])).summary == "declared generated"
    webp = webp_with([(b"XMP ", xmp_packet("trainedAlgorithmicMedia"))])
    found = read_provenance(webp)
    assert found.summary == "declared generated" and found.error is None


def test_exif_make_and_model_say_camera():
    found = read_provenance(camera_jpeg())
    assert found.summary == "camera" and found.error is None
    assert found.exif == {"make": "Canon", "model": "Canon EOS R5", "software": "Firmware Version 1.8.1"}


def test_web_ui_parameters_in_exif_user_comment():
    """Stable Diffusion web UIs write their parameters into EXIF UserComment in JPEG and WebP."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + SD_PARAMETERS.encode("utf-16-be")
    found = read_provenance(plain_jpeg(exif=exif.tobytes()))
    assert found.summary == "declared generated" and "Steps: 20" in found.generator_text["text"]["EXIF UserComment"]


@pytest.mark.parametrize(
    ("make", "fmt"),
    [(sd_png, "PNG"), (lambda: xmp_jpeg("trainedAlgorithmicMedia"), "JPEG"), (camera_jpeg, "JPEG")],
)
def test_stripped_copies_declare_nothing(make, fmt):
    assert read_provenance(make()).summary != "nothing declared"
    found = read_provenance(stripped(make(), fmt))
    assert found.summary == "nothing declared" and found.error is None
    assert found.c2pa is found.digital_source_type is found.exif is found.generator_text is None
    assert "absence proves nothing" in found.caveat


def test_signed_c2pa_is_read_and_not_trusted_without_a_trust_list(signed, monkeypatch):
    data, _ = signed
    monkeypatch.delenv("FACECHECK_C2PA_TRUST_ANCHORS", raising=False)
    found = read_provenance(data)
    assert found.summary == "declared generated" and found.error is None
    c2pa = found.c2pa
    assert c2pa["validation"] == "untrusted" and c2pa["validation_state"] == "Valid"
    assert "signingCredential.untrusted" in c2pa["failures"]
    assert c2pa["signer"] == "facecheck test signer" and c2pa["issuer"] == "facecheck tests"
    assert c2pa["claim_generator"].startswith("facecheck-tests 1.0")
    assert c2pa["digital_source_type"] == IPTC + "trainedAlgorithmicMedia"
    assert c2pa["actions"][0]["action"] == "c2pa.created"
    assert read_provenance(stripped(data, "JPEG")).summary == "nothing declared"


def test_signed_c2pa_with_its_ca_as_trust_anchor_is_trusted(signed, tmp_path, monkeypatch):
    data, ca = signed
    (tmp_path / "anchors.pem").write_bytes(ca)
    monkeypatch.setenv("FACECHECK_C2PA_TRUST_ANCHORS", str(tmp_path / "anchors.pem"))
    found = read_provenance(data)
    assert found.c2pa["validation"] == "trusted" and found.c2pa["validation_state"] == "Trusted"


def test_tampered_c2pa_is_invalid_and_says_so(signed, monkeypatch):
    monkeypatch.delenv("FACECHECK_C2PA_TRUST_ANCHORS", raising=False)
    data = bytearray(signed[0])
    data[-200] ^= 0xFF  # inside the image data the manifest's hash covers
    found = read_provenance(bytes(data))
    assert found.c2pa["validation"] == "invalid" and found.c2pa["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in found.c2pa["failures"]
    assert found.summary == "declared generated"  # what it declares, with the failed validation beside it


def test_without_c2pa_python_the_store_is_named_not_read(signed, monkeypatch):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # import c2pa now raises ImportError
    found = read_provenance(signed[0])
    assert found.c2pa["validation"] == "not checked"
    assert "pip install 'facecheck[provenance]'" in found.c2pa["message"]


def test_a_remote_manifest_is_never_fetched():
    """A file that points at a remote C2PA manifest (XMP dcterms:provenance) must not make facecheck fetch it:
    in the service that would be a request to any address an uploader names."""
    pytest.importorskip("c2pa")
    import http.server
    import threading

    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/manifest.c2pa"
        xmp = (
            b'http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            b'xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="'
            + url.encode()
            + b'"/></rdf:RDF></x:xmpmeta>'
        )
        stub = b"JP\x00\x01\x00\x00\x00\x01\x00\x00\x00\x10jumb" + bytes(8)
        found = read_provenance(with_segment(with_segment(plain_jpeg(), 0xEB, stub), 0xE1, xmp))
    finally:
        server.shutdown()
        server.server_close()
    assert asked == [] and found.c2pa["validation"] == "unreadable" and found.error


# --- hostile and broken metadata ---------------------------------------------------------------------------------


def _broken_files(signed_jpeg: bytes | None) -> dict[str, bytes]:
    jpeg_xmp, png = xmp_jpeg("trainedAlgorithmicMedia"), sd_png()
    garbage_jumbf = b"JP\x00\x01\x00\x00\x00\x01" + struct.pack(">I", 40) + b"jumb" + b"\xde\xad\xbe\xef" * 20
    files = {
        "truncated jpeg header": jpeg_xmp[:300],
        "truncated jpeg data": camera_jpeg()[:-400],
        "truncated png": png[: len(png) // 2],
        "truncated webp": webp_with([(b"XMP ", xmp_packet("digitalCapture"))])[:-50],
        "garbage xmp": with_segment(
            plain_jpeg(), 0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:RDF \x00\xff"
        ),
        "xmp with entities": with_segment(
            plain_jpeg(),
            0xE1,
            b'http://ns.adobe.com/xap/1.0/\x00<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta>&a;</x:xmpmeta>',
        ),
        "oversized xmp": png_with([(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + b"<x>" + b" " * 2_000_000)]),
        "malformed exif": with_segment(
            plain_jpeg(), 0xE1, b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 5
        ),
        "exif without tiff header": with_segment(plain_jpeg(), 0xE1, b"Exif\x00\x00garbage"),
        "bad zTXt": png_with([(b"zTXt", b"parameters\x00\x00not zlib at all")]),
        "bad crc": png[:33] + png[33:-12].replace(b"Steps", b"Stxps", 1) + png[-12:],
        "garbage jumbf": with_segment(plain_jpeg(), 0xEB, garbage_jumbf),
        "garbage caBX": png_with([(b"caBX", b"\x00\x00\x00\x10jumb\xff\xff\xff\xff" * 4)]),
        "garbage webp C2PA": webp_with([(b"C2PA", b"\x00" * 33)]),
    }
    if signed_jpeg is not None:
        start = signed_jpeg.find(b"jumb")
        files["scrambled signed manifest"] = signed_jpeg[: start + 60] + b"\x55" * 500 + signed_jpeg[start + 560 :]
    return files


@pytest.fixture(scope="module")
def broken(request) -> dict[str, bytes]:
    try:
        signed_jpeg = request.getfixturevalue("signed")[0]
    except pytest.skip.Exception:
        signed_jpeg = None
    return _broken_files(signed_jpeg)


def test_broken_metadata_is_an_error_never_an_exception(broken):
    for name, data in broken.items():
        found = read_provenance(data)
        assert found.summary in SUMMARIES, name
        assert found.error and "\n" not in found.error, (name, found)
        assert found.caveat == CAVEAT


def test_unreadable_paths_are_errors(tmp_path):
    assert "not read" in read_provenance(tmp_path / "missing.jpg").error
    assert "not read" in read_provenance(tmp_path).error
    assert read_provenance(b"").summary == "nothing declared"


def test_reading_is_fast(tmp_path):
    makers = [sd_png, camera_jpeg, lambda: xmp_jpeg("trainedAlgorithmicMedia"), plain_jpeg]
    paths = []
    for index in range(52):
        path = tmp_path / f"{index}.bin"
        path.write_bytes(makers[index % len(makers)]())
        paths.append(path)
    times = []
    for path in paths:
        started = time.perf_counter()
        read_provenance(path)
        times.append(time.perf_counter() - started)
    median_ms = statistics.median(times) * 1000
    print(f"provenance: median {median_ms:.3f} ms per file over {len(paths)} files")
    assert median_ms < 20  # the target is 5 ms; loose so that a loaded machine does not fail it


def test_module_imports_no_torch():
    import subprocess

    code = "import sys, facecheck.provenance; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- beside the verdict: predict, the CLI, the service -----------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facecheck.checkpoint import build_model, card_for, save_checkpoint

    from .conftest import quick_config

    folder = tmp_path_factory.mktemp("model")
    config = quick_config("seed-cnn", None)
    save_checkpoint(folder / "m.pt", build_model(config), card_for(config, epoch=1, metrics={"val_accuracy": 0.5}))
    return folder / "m.pt"


def test_predict_reports_provenance_beside_the_verdict(model_path, broken, tmp_path):
    from facecheck.inference.predictor import Detector

    files = {"sd.png": sd_png(), "camera.jpg": camera_jpeg(), "plain.jpg": plain_jpeg()}
    for index, data in enumerate(broken.values()):
        files[
            f"broken-{index}." + ("png" if data.startswith(b"\x89PNG") else "webp" if data[:4] == b"RIFF" else "jpg")
        ] = data
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    detector = Detector.load(model_path)
    results = {Path(p.path).name: p for p in detector.predict(sorted(tmp_path.iterdir()))}
    without = {Path(p.path).name: p for p in detector.predict(sorted(tmp_path.iterdir()), provenance=False)}
    assert len(results) == len(files)
    assert results["sd.png"].provenance.summary == "declared generated" and results["sd.png"].label in ("real", "fake")
    assert results["camera.jpg"].provenance.summary == "camera"
    assert results["plain.jpg"].provenance.summary == "nothing declared"
    for name in files:
        assert results[name].provenance is not None, name
        if name.startswith("broken"):
            assert results[name].provenance.error, name
            assert results[name].p_fake is not None or results[name].error, name  # a result either way
    for name, result in results.items():  # beside the verdict, never part of it: the same scores without it
        assert (result.p_fake, result.label, result.error) == (
            without[name].p_fake,
            without[name].label,
            without[name].error,
        )
    row = results["sd.png"].to_dict()
    assert row["provenance"]["summary"] == "declared generated" and row["provenance"]["caveat"] == CAVEAT


def test_an_ensemble_reports_it_and_evaluation_skips_it(model_path, tmp_path):
    from facecheck.inference.ensemble import Ensemble
    from facecheck.inference.predictor import Detector

    (tmp_path / "sd.png").write_bytes(sd_png())
    ensemble = Ensemble([Detector.load(model_path), Detector.load(model_path)])
    assert ensemble.predict([tmp_path / "sd.png"])[0].provenance.summary == "declared generated"
    assert Detector.load(model_path).predict([tmp_path / "sd.png"], provenance=False)[0].provenance is None


def test_cli_json_and_csv_carry_provenance(model_path, tmp_path, capsys):
    from facecheck.cli import main

    (tmp_path / "sd.png").write_bytes(sd_png())
    (tmp_path / "camera.jpg").write_bytes(camera_jpeg())
    assert main(["predict", "--model", str(model_path), str(tmp_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {Path(row["path"]).name: row for row in rows}
    assert by_name["sd.png"]["provenance"]["summary"] == "declared generated"
    assert by_name["sd.png"]["provenance"]["generator_text"]["generator"] == "Stable Diffusion web UI"
    assert by_name["camera.jpg"]["provenance"]["exif"]["make"] == "Canon"
    assert main(["predict", "--model", str(model_path), str(tmp_path), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "path,p_fake,label,faces,face_box,error,provenance"
    assert lines[1].endswith(",camera") and lines[2].endswith(",declared generated")
    assert main(["predict", "--model", str(model_path), str(tmp_path / "sd.png")]) == 0
    assert "provenance: declared generated" in capsys.readouterr().out


def test_service_returns_provenance_and_the_page_shows_it(model_path, broken):
    from fastapi.testclient import TestClient

    from facecheck.inference.predictor import Detector
    from facecheck.serving.app import create_app

    api = TestClient(create_app(Detector.load(model_path)))
    body = api.post("/v1/predict", files={"file": ("x.png", sd_png(), "image/png")}).json()
    assert body["provenance"]["summary"] == "declared generated" and body["provenance"]["caveat"] == CAVEAT
    assert "p_fake" in body and "label" in body
    files = [
        ("files", ("a.jpg", camera_jpeg(), "image/jpeg")),
        ("files", ("b.jpg", broken["garbage jumbf"], "image/jpeg")),
    ]
    results = api.post("/v1/predict/batch", files=files).json()["results"]
    assert results[0]["provenance"]["summary"] == "camera"
    assert results[1]["provenance"]["error"] and "p_fake" in results[1]
    page = api.get("/").text
    assert "provenance" in page and "caveat" in page
