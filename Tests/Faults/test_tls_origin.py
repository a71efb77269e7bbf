"""TLS (https and wss with a self-signed certificate this test makes) and the origin
allow-list on /live, against the real hub binary ($HUB_BIN)."""

import asyncio
import json
import os
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
import websockets

from hub_device import DeviceClient
from livehub import LiveHub

HUB_BIN = os.environ.get("HUB_BIN")

pytestmark = pytest.mark.skipif(
    not HUB_BIN,
    reason="!!! HUB_BIN is not set: SKIPPING the TLS and origin tests against the real hub binary !!!")


@pytest.fixture(scope="module")
def certificate():
    folder = tempfile.mkdtemp(prefix="hub-tls-")
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_hub(certificate):
    cert, key = certificate
    os.environ["HUB_TLS_CERT"], os.environ["HUB_TLS_KEY"] = cert, key
    hub = LiveHub(HUB_BIN)
    hub.url = hub.url.replace("http://", "https://")
    try:
        hub.start()
        yield hub
    finally:
        del os.environ["HUB_TLS_CERT"], os.environ["HUB_TLS_KEY"]
        hub.cleanup()


def trusting(certificate):
    context = ssl.create_default_context(cafile=certificate[0])
    return context


def test_https_and_wss_with_a_self_signed_certificate(tls_hub, certificate):
    context = trusting(certificate)
    with urllib.request.urlopen(tls_hub.url + "/healthz", context=context, timeout=10) as answer:
        assert answer.status == 200
    request = urllib.request.Request(tls_hub.url + "/api/v1/devices", headers={"Authorization": f"Bearer {tls_hub.api_token}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        assert answer.status == 200 and isinstance(json.loads(answer.read()), list)
    # Plain http on the TLS port gets no HTTP answer.
    with pytest.raises(Exception):
        urllib.request.urlopen(tls_hub.url.replace("https://", "http://") + "/healthz", timeout=5).read()

    token = tls_hub.add_device("tls-1")

    async def stream():
        async with DeviceClient(tls_hub.url, "tls-1", token, connect_options={"ssl": context}) as client:
            for i in range(50):
                await client.send({"temp": 20.0 + i, "count": i})
            assert await client.wait_acked(30)

    asyncio.run(asyncio.wait_for(stream(), 60))
    assert tls_hub.psql("select count(*), count(distinct seq) from telemetry where device_id = 'tls-1'") == ["100|50"]


def test_live_refuses_a_foreign_origin_and_takes_its_own(tls_hub, certificate):
    context = trusting(certificate)
    live = tls_hub.url.replace("https://", "wss://") + f"/live?token={tls_hub.api_token}"

    async def attempt(origin):
        try:
            async with websockets.connect(live, ssl=context, origin=origin) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if message["type"] == "pong":
                        return 101
        except websockets.exceptions.InvalidStatus as refused:
            return refused.response.status_code

    port = tls_hub.url.rsplit(":", 1)[1]
    assert asyncio.run(attempt("https://evil.example")) == 403
    assert asyncio.run(attempt(f"https://127.0.0.1:{port}")) == 101
    assert asyncio.run(attempt(None)) == 101  # not a browser: no Origin, no check


def test_an_unreadable_certificate_stops_the_start_with_its_path(tmp_path):
    missing = str(tmp_path / "missing.pem")
    done = subprocess.run(
        [HUB_BIN, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--tls-cert", missing, "--tls-key", missing,
         "--api-token", "fault-test-api-token", "--database-url", "host=/nonexistent dbname=x"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert missing in done.stdout + done.stderr
