"""The test Hub speaks the Hub protocol: the real huggingface_hub client works against it unchanged."""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hubserver import HubServer, RepoSpec, WanProfile
from tests.hubserver.server import parse_range

api = HfApi()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects: (status, headers, body)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {})) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def cdn_url(hub: HubServer | str, repo_id: str, path: str) -> str:
    """Where the Hub (a server or its URL) redirects this file to."""
    status, headers, _ = fetch(f"{hub if isinstance(hub, str) else hub.url}/{repo_id}/resolve/main/{path}")
    assert status == 302
    return headers["Location"]


# --- downloads through the real client ---------------------------------------------------------


def test_snapshot_download_is_byte_identical(hub: HubServer, fixture_repos: dict[str, RepoSpec], hf_cache: Path):
    spec = fixture_repos["tiny/gpt2"]
    snapshot = Path(snapshot_download("tiny/gpt2", cache_dir=hf_cache))
    assert snapshot.name == spec.sha
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(spec.files)
    for path, file in spec.files.items():
        assert (snapshot / path).read_bytes() == file.read_bytes(), path
    assert any(r.path == f"/api/models/tiny/gpt2/tree/{spec.sha}" for r in hub.log)


def test_hf_hub_download_follows_the_cdn_redirect(hub: HubServer, fixture_repos: dict[str, RepoSpec], hf_cache: Path):
    file = fixture_repos["tiny/gpt2"].files["model.safetensors"]
    path = Path(hf_hub_download("tiny/gpt2", "model.safetensors", cache_dir=hf_cache, token="hf_test_good"))
    assert path.read_bytes() == file.read_bytes()
    assert path.resolve().name == file.sha256  # the blob is named by the LFS sha256 (X-Linked-Etag)
    head, get = [(r.method, r.status, r) for r in hub.log if "model.safetensors" in r.path]
    assert head[:2] == ("HEAD", 302) and get[:2] == ("GET", 200)
    assert get[2].path.startswith(f"/cdn/{file.sha256}/")
    assert "Authorization" in head[2].headers and "Authorization" not in get[2].headers


def test_regular_files_are_served_directly_with_their_git_sha1(hub: HubServer, fixture_repos: dict[str, RepoSpec]):
    spec = fixture_repos["tiny/gpt2"]
    status, headers, body = fetch(f"{hub.url}/tiny/gpt2/resolve/main/config.json")
    assert (status, headers["X-Repo-Commit"]) == (200, spec.sha)
    assert headers["ETag"] == f'"{spec.files["config.json"].blob_id}"'
    assert hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest() == spec.files["config.json"].blob_id


@pytest.mark.parametrize("revision", ["dev", "refs/pr/1", "DEV_SHA"])
def test_revisions_resolve_to_their_commit(
    hub: HubServer, fixture_repos: dict[str, RepoSpec], hf_cache: Path, revision: str
):
    spec = fixture_repos["tiny/gpt2"]
    dev = spec.refs["dev"]
    revision = dev if revision == "DEV_SHA" else revision
    assert api.model_info("tiny/gpt2", revision=revision).sha == dev != spec.sha
    readme = hf_hub_download("tiny/gpt2", "README.md", revision=revision, cache_dir=hf_cache)
    assert Path(readme).read_bytes() == spec.commits[dev].files["README.md"].read_bytes()
    assert Path(readme).read_bytes() != spec.files["README.md"].read_bytes()
    assert api.model_info("tiny/gpt2", revision="v1.0").sha == spec.sha


def test_model_info_and_tree(hub: HubServer, fixture_repos: dict[str, RepoSpec]):
    spec = fixture_repos["tiny/llama-sharded"]
    info = api.model_info("tiny/llama-sharded", files_metadata=True)
    assert (info.sha, info.gated, info.private, info.library_name) == (spec.sha, False, False, "transformers")
    assert info.card_data.license == "apache-2.0" and info.config["model_type"] == "llama"
    lfs = {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs}
    assert lfs == {p: f.sha256 for p, f in spec.files.items() if f.lfs} and len(lfs) > 1
    assert info.safetensors.total == sum(spec.params.values())
    top = {(e.path, type(e).__name__) for e in api.list_repo_tree("tiny/llama-sharded")}
    assert ("original", "RepoFolder") in top and ("original/params.json", "RepoFile") not in top
    files = {e.path for e in api.list_repo_tree("tiny/llama-sharded", recursive=True)}
    assert set(spec.files) <= files
    assert [e.path for e in api.list_repo_tree("tiny/llama-sharded", path_in_repo="original")] == [
        "original/params.json"
    ]


# --- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=10-", (10, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=900-5000", (900, 1000)),
        ("bytes=1000-", None),
        ("bytes=5-4", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str, span: tuple[int, int] | None):
    assert parse_range(header, 1000) == span


def test_ranged_reads(hub: HubServer, fixture_repos: dict[str, RepoSpec]):
    file = fixture_repos["tiny/big"].files["model.safetensors"]
    url = cdn_url(hub, "tiny/big", "model.safetensors")
    data = b"".join(file.content.iter_bytes(1000, 2000))
    status, headers, body = fetch(url, {"Range": "bytes=1000-1999"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 1000-1999/{file.size}", data)
    status, headers, _ = fetch(url, {"Range": f"bytes={file.size}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{file.size}")


def test_virtual_files_serve_real_headers_and_zero_data(hub: HubServer, fixture_repos: dict[str, RepoSpec]):
    file = fixture_repos["meta-llama/Meta-Llama-3-70B"].files["model-00030-of-00030.safetensors"]
    url = cdn_url(hub, "meta-llama/Meta-Llama-3-70B", file.path)
    _, _, head = fetch(url, {"Range": "bytes=0-7"})
    assert head == file.content.head.read_bytes()[:8]  # type: ignore[union-attr]
    status, headers, tail = fetch(url, {"Range": "bytes=-4096"})
    assert (status, tail) == (206, bytes(4096))
    assert headers["Content-Range"] == f"bytes {file.size - 4096}-{file.size - 1}/{file.size}"


# --- errors, as the client maps them -----------------------------------------------------------


def _download(repo_id: str, path: str = "config.json", **kwargs: Any) -> Callable[[Path], Any]:
    return lambda cache: hf_hub_download(repo_id, path, cache_dir=cache, **kwargs)


@pytest.mark.parametrize(
    ("call", "exception", "status"),
    [
        pytest.param(
            lambda cache: api.model_info("tiny/missing"), RepositoryNotFoundError, 404, id="info-missing-repo"
        ),
        pytest.param(_download("tiny/missing"), RepositoryNotFoundError, 404, id="download-missing-repo"),
        pytest.param(
            lambda cache: api.model_info("tiny/gpt2", revision="nope"),
            RevisionNotFoundError,
            404,
            id="info-missing-revision",
        ),
        pytest.param(
            _download("tiny/gpt2", revision="nope"), RevisionNotFoundError, 404, id="download-missing-revision"
        ),
        pytest.param(_download("tiny/gpt2", "missing.txt"), RemoteEntryNotFoundError, 404, id="missing-entry"),
        pytest.param(_download("tiny/gated"), GatedRepoError, 401, id="gated-no-token"),
        pytest.param(_download("tiny/gated", token="hf_test_ungranted"), GatedRepoError, 403, id="gated-not-granted"),
        pytest.param(lambda cache: api.model_info("tiny/private"), RepositoryNotFoundError, 404, id="info-private"),
        pytest.param(_download("tiny/private"), RepositoryNotFoundError, 404, id="download-private"),
        pytest.param(
            lambda cache: api.model_info("tiny/gpt2", token="hf_bad"), HfHubHTTPError, 401, id="info-bad-token"
        ),
        pytest.param(_download("tiny/gpt2", token="hf_bad"), HfHubHTTPError, 401, id="download-bad-token"),
        pytest.param(_download("tiny/gated", token="hf_bad"), HfHubHTTPError, 401, id="gated-bad-token"),
        pytest.param(lambda cache: api.whoami(token="hf_bad"), HfHubHTTPError, 401, id="whoami-bad-token"),
    ],
)
def test_errors_map_to_client_exceptions(
    hub: HubServer, hf_cache: Path, call: Callable[[Path], Any], exception: type[Exception], status: int
):
    with pytest.raises(exception) as raised:
        call(hf_cache)
    response = raised.value.response  # type: ignore[attr-defined]
    assert response.status_code == status
    if exception is HfHubHTTPError:  # a bad token is none of the specific errors
        assert not isinstance(raised.value, (RepositoryNotFoundError, GatedRepoError))
        assert response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_every_error_response_carries_an_error_code(hub: HubServer):
    for path in [
        "/api/models/tiny/missing",
        "/api/models/tiny/gpt2/revision/nope",
        "/tiny/gpt2/resolve/main/missing.txt",
        "/tiny/gated/resolve/main/config.json",
        "/tiny/private/resolve/main/config.json",
        "/api/models/tiny/gpt2/tree/main/missing",
    ]:
        status, headers, _ = fetch(hub.url + path)
        assert status in (401, 403, 404) and headers.get("X-Error-Code"), path


@pytest.mark.parametrize(("token", "name"), [("hf_test_good", "test-user"), ("hf_test_ungranted", "test-ungranted")])
def test_valid_tokens(hub: HubServer, hf_cache: Path, token: str, name: str):
    assert api.whoami(token=token)["name"] == name
    assert api.model_info("tiny/private", token=token).private is True
    hf_hub_download("tiny/private", "config.json", cache_dir=hf_cache, token=token)


def test_a_granted_token_reads_gated_content(hub: HubServer, hf_cache: Path):
    assert api.model_info("tiny/gated").gated == "manual"  # info is public
    hf_hub_download("tiny/gated", "model.safetensors", cache_dir=hf_cache, token="hf_test_good")


# --- faults ------------------------------------------------------------------------------------


def test_throttle_slows_the_paths_in_scope_only(hub: HubServer):
    size, rate = 100_000, 100_000

    def seconds_to_fetch(repo_id: str) -> float:
        url = cdn_url(hub, repo_id, "model.safetensors")
        started = time.monotonic()
        _, _, body = fetch(url, {"Range": f"bytes=0-{size - 1}"})
        assert len(body) == size
        return time.monotonic() - started

    hub.faults.set(path="/tiny/big/", throttle_bps=rate)
    # A lower bound (load can only add to it), less the last 1/20 s piece, sent before the pause after it.
    assert seconds_to_fetch("tiny/big") >= 0.95 * size / rate
    # Throttled, this would take a full second too: half of it is still ~100x what it takes here.
    assert seconds_to_fetch("tiny/gpt2") < size / rate / 2


def test_cut_connection(hub: HubServer):
    url = cdn_url(hub, "tiny/gpt2", "model.safetensors")
    hub.faults.set(path="/cdn/", cut_after_bytes=1000)
    for _ in range(2):
        with pytest.raises(http.client.IncompleteRead):
            fetch(url)
    assert [r.bytes_sent for r in hub.log[-2:]] == [1000, 1000]
    assert fetch(f"{hub.url}/tiny/gpt2/resolve/main/config.json")[0] == 200  # out of scope


def test_the_client_resumes_a_cut_download_from_its_last_10mib_chunk(
    hub: HubServer, fixture_repos: dict[str, RepoSpec], hf_cache: Path
):
    file = fixture_repos["tiny/big"].files["model.safetensors"]
    hub.faults.set(path="/cdn/", cut_after_bytes=15_000_000, cut_times=1)
    path = hf_hub_download("tiny/big", "model.safetensors", cache_dir=hf_cache)
    assert Path(path).stat().st_size == file.size and Path(path).resolve().name == file.sha256
    chunk = 10 * 1024 * 1024  # huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE: what it keeps of a cut body
    gets = [(r.range, r.bytes_sent) for r in hub.log if r.method == "GET"]
    assert gets == [(None, 15_000_000), (f"bytes={chunk}-", file.size - chunk)]


def test_fail_nth_request(hub: HubServer):
    hub.faults.set(path="/api/models/", fail_requests=2, fail_status=503)
    statuses = [fetch(f"{hub.url}/api/models/tiny/gpt2")[0] for _ in range(3)]
    assert statuses == [200, 503, 200]
    fetch(f"{hub.url}/tiny/gpt2/resolve/main/config.json")  # out of scope, not counted
    hub.faults.fail_requests = 1  # setting a counted fault restarts the count
    assert fetch(f"{hub.url}/api/models/tiny/gpt2")[0] == 503


def test_corrupt(hub: HubServer, fixture_repos: dict[str, RepoSpec]):
    file = fixture_repos["tiny/gpt2"].files["model.safetensors"]
    hub.faults.corrupt = True
    _, _, body = fetch(cdn_url(hub, "tiny/gpt2", "model.safetensors"))
    assert len(body) == file.size and hashlib.sha256(body).hexdigest() != file.sha256


def test_stall_delays_one_request_not_the_others(hub: HubServer):
    stall_s = 2.0
    hub.faults.set(path="/api/models/tiny/llama", stall_s=stall_s)
    stalled: dict[str, float] = {}

    def timed_stalled_request() -> None:
        started = time.monotonic()
        fetch(hub.url + "/api/models/tiny/llama")
        stalled["seconds"] = time.monotonic() - started

    slow = threading.Thread(target=timed_stalled_request)
    slow.start()
    time.sleep(stall_s / 4)  # let the stalled request reach the server first
    assert fetch(hub.url + "/api/models/tiny/gpt2")[0] == 200
    assert slow.is_alive(), "answered only once the stalled request was"
    slow.join()
    assert stalled["seconds"] >= stall_s


def test_keep_alive_and_log(hub: HubServer):
    host, port = hub.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    sockets = []
    for _ in range(2):
        connection.request("GET", "/tiny/gpt2/resolve/main/config.json", headers={"Range": "bytes=0-9"})
        response = connection.getresponse()
        assert (response.status, len(response.read())) == (206, 10)
        sockets.append(connection.sock)
    connection.close()
    assert sockets[0] is sockets[1] is not None
    assert [(r.method, r.status, r.range, r.bytes_sent) for r in hub.log] == [("GET", 206, "bytes=0-9", 10)] * 2
    hub.clear_log()
    assert hub.log == []


# --- WAN mode: lower bounds are what the caps guarantee; upper bounds only that the server keeps up, --
# --- with ten times the ideal duration, since a loaded machine can only slow things down --------------


def timed_fetch(url: str, headers: dict[str, str] | None = None) -> tuple[float, int, dict[str, str], bytes]:
    started = time.monotonic()
    status, response_headers, body = fetch(url, headers)
    return time.monotonic() - started, status, response_headers, body


def test_wan_caps_each_connection(hub: HubServer):
    url = cdn_url(hub, "tiny/big", "model.safetensors")
    hub.faults.wan = WanProfile(per_conn_bps=2e6)
    seconds, status, _, body = timed_fetch(url, {"Range": "bytes=0-999999"})
    assert (status, len(body)) == (206, 1_000_000)
    assert 0.4 <= seconds <= 5.0  # ideal 0.5 s; up to 50 ms of catch-up may go at once


def test_wan_link_is_shared_by_all_connections(hub: HubServer):
    url = cdn_url(hub, "tiny/big", "model.safetensors")
    hub.faults.wan = WanProfile(per_conn_bps=20e6, link_bps=16e6)
    ranges = [{"Range": f"bytes={i * 2_000_000}-{(i + 1) * 2_000_000 - 1}"} for i in range(8)]
    started = time.monotonic()
    with ThreadPoolExecutor(len(ranges)) as pool:
        bodies = [body for _, _, body in pool.map(lambda headers: fetch(url, headers), ranges)]
    seconds = time.monotonic() - started
    assert [len(body) for body in bodies] == [2_000_000] * 8
    assert 0.8 <= seconds <= 10.0  # 16 MB: ideal 1 s at the link's cap, 0.1 s at the connections'
    assert hub.faults.wan_link is not None and hub.faults.wan_link.connections == 8


def test_wan_round_trips(hub: HubServer):
    hub.faults.wan = WanProfile(rtt_ms=100, connect_rtts=2)
    host, port = hub.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    durations = []
    for _ in range(2):
        started = time.monotonic()
        connection.request("GET", "/tiny/gpt2/resolve/main/config.json")
        assert connection.getresponse().read()
        durations.append(time.monotonic() - started)
    connection.close()
    assert durations[0] >= 0.3 and durations[1] >= 0.1  # handshakes and a round trip, then a round trip
    assert hub.faults.wan_link.connections == 1  # type: ignore[union-attr]


def test_wan_slow_edge_serves_every_nth_connection_at_an_eighth(hub: HubServer):
    url = cdn_url(hub, "tiny/big", "model.safetensors")
    hub.faults.wan = WanProfile(per_conn_bps=4e6, slow_every=2)
    first, second = (timed_fetch(url, {"Range": "bytes=0-399999"})[0] for _ in range(2))
    assert second >= 0.7  # 400 KB at 0.5 MB/s: 0.8 s; at 4 MB/s it would be 0.1 s
    assert second > 2 * first


def test_wan_answers_429_above_max_in_flight(hub: HubServer):
    hub.faults.wan = WanProfile(rtt_ms=500, connect_rtts=0, max_in_flight=2, retry_after_s=3)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: fetch(f"{hub.url}/api/models/tiny/gpt2"), range(4)))
    assert sorted(status for status, _, _ in answers) == [200, 200, 429, 429]
    assert {headers["Retry-After"] for status, headers, _ in answers if status == 429} == {"3"}
    assert fetch(f"{hub.url}/api/models/tiny/gpt2")[0] == 200  # the places in flight were given back


def test_wan_cdn_urls_expire(hub: HubServer, fixture_repos: dict[str, RepoSpec]):
    hub.faults.wan = WanProfile(url_ttl_s=1)
    issued = time.time()
    url = cdn_url(hub, "tiny/gpt2", "model.safetensors")
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert expires == math.ceil(issued + 1) or expires == math.ceil(issued + 1) + 1
    status, _, body = fetch(url)
    assert (status, len(body)) == (200, fixture_repos["tiny/gpt2"].files["model.safetensors"].size)
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    status, headers, _ = fetch(url)
    assert (status, headers["X-Error-Code"]) == (403, "AccessDenied")
    hub.faults.reset()
    assert fetch(url)[0] == 403  # the URL carries its expiry; the profile that issued it is gone


def test_wan_profile_parse():
    profile = WanProfile.parse("per_conn_bps=8e6,link_bps=96e6,rtt_ms=30,slow_every=4,url_ttl_s=600")
    assert profile == WanProfile(per_conn_bps=8e6, link_bps=96e6, rtt_ms=30, slow_every=4, url_ttl_s=600)
    assert WanProfile.parse(str(profile)) == profile and WanProfile.parse("") == WanProfile()
    for bad in ["speed=1", "slow_every=2.5,per_conn_bps=1e6", "slow_every=2", "link_bps=-1", "rtt_ms"]:
        with pytest.raises(ValueError):
            WanProfile.parse(bad)


def test_the_command_line_serves_behind_a_wan(tmp_path: Path, fixture_repos: dict[str, RepoSpec]):
    from tests.hubserver import default_root

    command = [sys.executable, "-m", "tests.hubserver", str(default_root()), "--wan", "per_conn_bps=1e6,rtt_ms=50"]
    server = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        seconds, status, _, body = timed_fetch(f"{url}/tiny/gpt2/resolve/main/config.json")
        assert (status, body) == (200, fixture_repos["tiny/gpt2"].files["config.json"].read_bytes())
        assert seconds >= 0.15  # two handshakes and a round trip of 50 ms
        big = cdn_url(url, "tiny/big", "model.safetensors")
        seconds, status, _, body = timed_fetch(big, {"Range": "bytes=0-299999"})
        assert (status, len(body)) == (206, 300_000) and seconds >= 0.25
    finally:
        server.terminate()
        server.wait()
