"""The test Hub speaks the Hub protocol: the real huggingface_hub client works against it unchanged."""
from __future__ import annotations

import hashlib
import http.client
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hubserver import HubServer, RepoSpec
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


def cdn_url(hub: HubServer, repo_id: str, path: str) -> str:
    status, headers, _ = fetch(f"{hub.url}/{repo_id}/resolve/main/{path}")
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


def test_hf_hub_download_follows_the_cdn_redirect(hub: HubServer, fixture_repos: dict[str, RepoSpec],
                                                  hf_cache: Path):
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
def test_revisions_resolve_to_their_commit(hub: HubServer, fixture_repos: dict[str, RepoSpec], hf_cache: Path,
                                           revision: str):
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
        "original/params.json"]


# --- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "span"), [
    ("bytes=0-99", (0, 100)), ("bytes=10-", (10, 1000)), ("bytes=-10", (990, 1000)), ("bytes=900-5000", (900, 1000)),
    ("bytes=1000-", None), ("bytes=5-4", None), ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=-", None),
])
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


@pytest.mark.parametrize(("call", "exception", "status"), [
    pytest.param(lambda cache: api.model_info("tiny/missing"), RepositoryNotFoundError, 404, id="info-missing-repo"),
    pytest.param(_download("tiny/missing"), RepositoryNotFoundError, 404, id="download-missing-repo"),
    pytest.param(lambda cache: api.model_info("tiny/gpt2", revision="nope"), RevisionNotFoundError, 404,
                 id="info-missing-revision"),
    pytest.param(_download("tiny/gpt2", revision="nope"), RevisionNotFoundError, 404, id="download-missing-revision"),
    pytest.param(_download("tiny/gpt2", "missing.txt"), RemoteEntryNotFoundError, 404, id="missing-entry"),
    pytest.param(_download("tiny/gated"), GatedRepoError, 401, id="gated-no-token"),
    pytest.param(_download("tiny/gated", token="hf_test_ungranted"), GatedRepoError, 403, id="gated-not-granted"),
    pytest.param(lambda cache: api.model_info("tiny/private"), RepositoryNotFoundError, 404, id="info-private"),
    pytest.param(_download("tiny/private"), RepositoryNotFoundError, 404, id="download-private"),
    pytest.param(lambda cache: api.model_info("tiny/gpt2", token="hf_bad"), HfHubHTTPError, 401, id="info-bad-token"),
    pytest.param(_download("tiny/gpt2", token="hf_bad"), HfHubHTTPError, 401, id="download-bad-token"),
    pytest.param(_download("tiny/gated", token="hf_bad"), HfHubHTTPError, 401, id="gated-bad-token"),
    pytest.param(lambda cache: api.whoami(token="hf_bad"), HfHubHTTPError, 401, id="whoami-bad-token"),
])
def test_errors_map_to_client_exceptions(hub: HubServer, hf_cache: Path, call: Callable[[Path], Any],
                                         exception: type[Exception], status: int):
    with pytest.raises(exception) as raised:
        call(hf_cache)
    response = raised.value.response  # type: ignore[attr-defined]
    assert response.status_code == status
    if exception is HfHubHTTPError:  # a bad token is none of the specific errors
        assert not isinstance(raised.value, (RepositoryNotFoundError, GatedRepoError))
        assert response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_every_error_response_carries_an_error_code(hub: HubServer):
    for path in ["/api/models/tiny/missing", "/api/models/tiny/gpt2/revision/nope",
                 "/tiny/gpt2/resolve/main/missing.txt", "/tiny/gated/resolve/main/config.json",
                 "/tiny/private/resolve/main/config.json", "/api/models/tiny/gpt2/tree/main/missing"]:
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


def test_the_client_resumes_a_cut_download_from_its_last_10mib_chunk(hub: HubServer, fixture_repos: dict[str, RepoSpec],
                                                                     hf_cache: Path):
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
