"""Operational hardening (hostile-spec class 13; contract section 7).

- `--api-token` / `--read-token` shorter than 16 characters, or empty: the hub exits
  non-zero and stderr names the flag.
- A data folder whose path holds spaces and a single quote works. The generated
  <data-dir>/api-token is 0600, the data folder 0700; the embedded postmaster runs as
  `postgres` (never `nobody`); pg_hba.conf has no `host` line that trusts; the cluster
  listens on no TCP port, only on a socket in a folder no one else may open.
- TLS: TLS 1.0/1.1 handshakes fail, TLS 1.2 with a cipher without forward secrecy
  (AES128-GCM-SHA256) fails, ECDHE works; a TCP client that never starts the handshake
  (or stops half way) is closed after --tls-handshake-timeout.

The data-folder hub runs with its defaults; the TLS hub with --tls-handshake-timeout 2
(new: the old binary refuses to start it).
"""

import concurrent.futures
import os
import pwd
import ssl
import subprocess
import tempfile
import time
import warnings

import pytest

from hostile_kit import (
    HUB_BIN, SKIP_WITHOUT_HUB, HostileHub, RssProbe, assert_alive, assert_others_unaffected, tcp_socket,
)

pytestmark = SKIP_WITHOUT_HUB

NO_DATABASE = "host=/nonexistent-hostile-test dbname=x connect_timeout=1"


# ---------------------------------------------------------------------------- tokens


def test_short_or_empty_tokens_stop_the_start_naming_the_flag(figures, tmp_path):
    cases = {
        "--api-token of 5": (["--api-token", "short"], "--api-token"),
        "--api-token empty": (["--api-token", ""], "--api-token"),
        "--api-token of 15": (["--api-token", "fifteen-chars15"], "--api-token"),
        "--read-token of 10": (["--api-token", "a-good-api-token-16", "--read-token", "short-read"], "--read-token"),
        "--read-token empty": (["--api-token", "a-good-api-token-16", "--read-token", ""], "--read-token"),
    }
    runs = {}
    for case, (flags, _) in cases.items():  # all at once: a wrong hub would sit waiting for its database
        folder = tempfile.mkdtemp(prefix="hub-tok-", dir=tmp_path)
        out, err = open(os.path.join(folder, "out"), "w+"), open(os.path.join(folder, "err"), "w+")
        proc = subprocess.Popen([HUB_BIN, "serve", "--data-dir", os.path.join(folder, "data"), "--port", "0",
                                 "--host", "127.0.0.1", "--database-url", NO_DATABASE, *flags],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        runs[case] = (proc, out, err)
    deadline = time.monotonic() + 10
    results = {}
    for case, (proc, out, err) in runs.items():
        try:
            code = proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = "still running after 10 s"
        out.seek(0)
        err.seek(0)
        results[case] = (code, err.read().strip(), out.read())
    figures(input="hub serve with " + "|".join(cases),
            answer="; ".join(f"{c}: exit {code}, stderr {e.splitlines()[-1][:90] if e else ''!r}"
                             for c, (code, e, _) in results.items()))
    for case, (code, stderr, stdout) in results.items():
        flag = cases[case][1]
        assert isinstance(code, int) and code > 0, f"{case}: exit {code}\n{stdout}\n{stderr}"
        assert flag in stderr, f"{case}: stderr does not name {flag}:\n{stderr}"
        assert "telemetry hub ready" not in stdout, f"{case}: the hub started"


# ---------------------------------------------------------------------------- the data folder


QUOTED_DIR_NAME = "it's a data dir"


@pytest.fixture(scope="module")
def folder_hub():
    """Started with no --api-token (the hub generates one) in a data folder it makes itself."""
    made = HostileHub(HUB_BIN, data_dir_name="made-by-the-hub", api_token=None)
    try:
        made.start()
        yield made
    finally:
        made.cleanup()


def test_a_data_folder_whose_path_holds_spaces_and_a_quote_works(figures):
    made = HostileHub(HUB_BIN, data_dir_name=QUOTED_DIR_NAME, api_token=None)
    try:
        try:
            made.start()
            started = "started"
        except RuntimeError as error:
            started = str(error).splitlines()[0][:200] + " | " + " ".join(
                l.strip() for l in str(error).splitlines() if "rror" in l)[:300]
        rss = RssProbe(made) if made.alive() else None
        if rss:
            rss.stop()
        figures(input=f"hub serve --data-dir {made.data_dir!r}", answer=started,
                rss_before=rss.before if rss else None, rss_after=rss.after if rss else None)
        assert started == "started", f"the hub did not start in {made.data_dir!r}: {started}\n{made.logs()}"
        assert os.path.isdir(os.path.join(made.data_dir, "postgres"))
        assert_others_unaffected(made)
    finally:
        made.cleanup()


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_listeners(inodes):
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    found.append(fields[1])
    return found


def test_the_data_folder_token_file_and_embedded_cluster_are_private(folder_hub, figures):
    hub = folder_hub
    rss = RssProbe(hub)
    data = hub.data_dir
    token_mode = os.stat(os.path.join(data, "api-token")).st_mode & 0o777
    folder_mode = os.stat(data).st_mode & 0o777
    postmaster = None
    with open(os.path.join(data, "postgres", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    with open(f"/proc/{postmaster}/status") as f:
        uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
    user = pwd.getpwuid(uid).pw_name
    with open(os.path.join(data, "postgres", "pg_hba.conf")) as f:
        hba = [line.split() for line in f if line.strip() and not line.lstrip().startswith("#")]
    trusting_host_lines = [" ".join(l) for l in hba if l[0].startswith("host") and "trust" in l]
    listen = hub.psql("show listen_addresses")
    socket_dirs = hub.psql("show unix_socket_directories")[0].split(",")
    socket_modes = {d.strip(): oct(os.stat(d.strip()).st_mode & 0o777) for d in socket_dirs if d.strip()}
    listeners = tcp_listeners(socket_inodes(postmaster))
    rss.stop()
    figures(input=f"hub serve --data-dir {data!r} (no --api-token)",
            answer=(f"api-token {oct(token_mode)}, data folder {oct(folder_mode)}, postmaster runs as {user}, "
                    f"trusting host lines {trusting_host_lines}, listen_addresses {listen}, TCP listeners {listeners}, "
                    f"socket folders {socket_modes}"),
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(hub, "a data folder with spaces and a quote")
    assert token_mode == 0o600, f"<data-dir>/api-token is {oct(token_mode)}, expected 0600"
    assert folder_mode == 0o700, f"the data folder is {oct(folder_mode)}, expected 0700"
    assert user == "postgres", f"the embedded postmaster runs as {user}"
    assert not trusting_host_lines, f"pg_hba.conf trusts TCP clients: {trusting_host_lines}"
    assert listen == [""], f"listen_addresses = {listen}"
    assert not listeners, f"the postmaster listens on TCP: {listeners}"
    assert all(int(mode, 8) & 0o077 == 0 for mode in socket_modes.values()), (
        f"the socket folder can be opened by others: {socket_modes}")
    assert len(hub.api_token) >= 16
    rss.assert_bounded()
    assert_others_unaffected(hub)


# ---------------------------------------------------------------------------- TLS

HANDSHAKE_TIMEOUT = 2
TLS_API_TOKEN = "sixteen-chars-16"  # exactly 16: the shortest a token may be


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("hostile-tls"))
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_module_hub(certificate):
    made = HostileHub(HUB_BIN, tls=certificate, api_token=TLS_API_TOKEN,
                      extra_args=["--tls-handshake-timeout", str(HANDSHAKE_TIMEOUT)])
    try:
        made.start()
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def tls_hub(tls_module_hub):
    tls_module_hub.revive()
    return tls_module_hub


LOCAL_FAILURES = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_CIPHER_MATCH", "no protocols available",
                  "no cipher match")


def client_context(minimum=None, maximum=None, ciphers=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum:
            context.minimum_version = minimum
        if maximum:
            context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def handshake(hub, context):
    """("ok", version, cipher) or ("refused", reason). Raises if the refusal came from this
    side (a client that cannot offer what it was asked to), which would prove nothing."""
    sock = tcp_socket(hub, timeout=10)
    try:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\nConnection: close\r\n\r\n".encode())
            answer = tls.recv(4096)
            return "ok", tls.version(), tls.cipher()[0], answer.split(b"\r\n")[0].decode()
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as error:
        text = f"{type(error).__name__}: {error}"
        if any(marker in text for marker in LOCAL_FAILURES):
            raise AssertionError(f"this client could not offer the handshake at all ({text}); the test proves nothing")
        return ("refused", text[:120])
    finally:
        sock.close()


def test_tls_1_0_and_1_1_handshakes_fail(tls_hub, figures):
    rss = RssProbe(tls_hub)
    old = {
        "TLS 1.0": handshake(tls_hub, client_context(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1, "ALL:@SECLEVEL=0")),
        "TLS 1.1": handshake(tls_hub, client_context(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, "ALL:@SECLEVEL=0")),
    }
    modern = handshake(tls_hub, client_context())
    rss.stop()
    figures(input="TLS handshakes with maximum_version TLS 1.0 and 1.1 (SECLEVEL=0, every cipher), then the default",
            answer=f"{old}; default {modern}", rss_before=rss.before, rss_after=rss.after)
    assert_alive(tls_hub, "old TLS handshakes")
    assert {v: r[0] for v, r in old.items()} == {"TLS 1.0": "refused", "TLS 1.1": "refused"}, old
    assert modern[0] == "ok" and modern[3].startswith("HTTP/1.1 200"), modern
    rss.assert_bounded()
    assert_others_unaffected(tls_hub)


def test_tls_1_2_without_forward_secrecy_fails_and_ecdhe_works(tls_hub, figures):
    rss = RssProbe(tls_hub)
    static = {c: handshake(tls_hub, client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=c))
              for c in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA")}
    ecdhe = handshake(tls_hub, client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
    rss.stop()
    figures(input="TLS 1.2 with RSA key exchange only (AES128-GCM-SHA256, AES256-GCM-SHA384, AES128-SHA); "
                  "then ECDHE-RSA-AES128-GCM-SHA256",
            answer=f"{static}; ECDHE {ecdhe}", rss_before=rss.before, rss_after=rss.after)
    assert_alive(tls_hub, "TLS 1.2 handshakes")
    assert {c: r[0] for c, r in static.items()} == {c: "refused" for c in static}, static
    assert ecdhe[:3] == ("ok", "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256") and ecdhe[3].startswith("HTTP/1.1 200"), ecdhe
    rss.assert_bounded()
    assert_others_unaffected(tls_hub)


def closed_within(sock, limit):
    """Seconds until the peer closes (EOF or reset), or None."""
    began = time.monotonic()
    sock.settimeout(limit)
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - began
    except ConnectionResetError:
        return time.monotonic() - began
    except TimeoutError:
        return None


def test_a_client_that_does_not_finish_the_handshake_is_closed_after_the_handshake_timeout(tls_hub, figures):
    rss = RssProbe(tls_hub)
    silent = tcp_socket(tls_hub)
    partial = tcp_socket(tls_hub)
    partial.sendall(bytes.fromhex("16030100c8010000c40303"))  # a ClientHello's first 11 bytes of 205
    limit = HANDSHAKE_TIMEOUT + 4
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        silent_s, partial_s = pool.map(lambda s: closed_within(s, limit), (silent, partial))
    silent.close()
    partial.close()
    rss.stop()
    fmt = lambda t: "never" if t is None else f"{t:.1f} s"
    figures(input=f"TCP clients that never send a ClientHello, or send 11 bytes of one (--tls-handshake-timeout "
                  f"{HANDSHAKE_TIMEOUT})",
            answer=f"silent closed after {fmt(silent_s)}, partial closed after {fmt(partial_s)}",
            rss_before=rss.before, rss_after=rss.after)
    assert_alive(tls_hub, "unfinished handshakes")
    for case, took in (("silent", silent_s), ("partial", partial_s)):
        assert took is not None, f"{case}: not closed within {limit} s"
        assert took >= HANDSHAKE_TIMEOUT - 0.5, f"{case}: closed after {took:.1f} s, before the handshake timeout"
    rss.assert_bounded()
    assert_others_unaffected(tls_hub)
