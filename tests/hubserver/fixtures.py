"""Build every repository the test Hub serves, once, and cache the result on disk.

`build_fixtures(root)` returns {repo_id: RepoSpec}. A build lives in `root/build-{key}`, where the key
hashes this package's sources, the tiny configs, the reference shapes and the library versions, so any
edit rebuilds; a warm call only reads the manifest. Builds are serialized across processes by a lock.
`demo=True` (what `python -m tests.hubserver` serves) also serves the repos the docs name as tiny models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import math
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.tiny_configs import TINY_CONFIGS

from .spec import Commit, Content, RepoFile, RepoSpec, git_blob_sha1, is_lfs, lfs_pointer
from .virtual import read_safetensors_header, safetensors_header, write_virtual_repo

HERE = Path(__file__).parent
SHAPES_FILE = HERE / "model_shapes.json"
_SOURCES = [HERE / "fixtures.py", HERE / "spec.py", HERE / "virtual.py", HERE.parent / "tiny_configs.py", SHAPES_FILE]
_LIBRARIES = ("transformers", "tokenizers", "torch", "safetensors")
BIG_BYTES = 50 * 1000 * 1000
BENCH_BYTES = 1 << 30
WAN_FILE_BYTES = 1 << 30
WAN_SHARDS = 8
WAN_SHARD_BYTES = 64 << 20
WAN_SMALL_SAFETENSORS = 37
WAN_SMALL_BYTES = (20_000, 800_000)
# Generated weights repeat a random block of a prime length, so that no chunk size a downloader may
# use (powers of two, 10 MiB) lines up with it: bytes fetched for the wrong offset fail the sha256.
WAN_PATTERN_BYTES = 1_000_003
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)
CHAT_FAMILIES = ("llama", "qwen2")
DEV_BRANCH_REPO = "tiny/gpt2"
# The repos the README walkthrough and notebooks/quickstart.ipynb name, as tiny models of the real model's depth
# (so hook names like blocks.12.hook_resid_post exist): repo id -> (tiny family, config overrides). They replace
# same-named full-size header-only repos, whose weights would be gigabytes of zeros.
DEMO_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai-community/gpt2": ("gpt2", {"n_layer": 12}),
    "google/gemma-2-2b": ("gemma2", {"num_hidden_layers": 26}),
}
_CORPUS = """Sparse autoencoders read the residual stream of a language model one layer at a time.
Attention heads move information between positions; the MLP blocks transform it in place.
A hook point is a named place in the forward pass where activations can be captured or patched.
Small models train quickly, load in milliseconds and make every test fast and deterministic.
The quick brown fox jumps over the lazy dog, 0123456789 times, and then it rests for a while.
"""
REMOTE_CODE = 'raise RuntimeError("remote code from a test repository must never be executed")\n'


def default_root() -> Path:
    """Where tests keep built fixtures: `MISTUDIO_TEST_HUB_ROOT`, else the user cache dir."""
    if os.environ.get("MISTUDIO_TEST_HUB_ROOT"):
        return Path(os.environ["MISTUDIO_TEST_HUB_ROOT"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mistudio-jupyter" / "test-hub"


def build_fixtures(
    root: Path | str, *, bench: bool = False, wan: bool = False, demo: bool = False
) -> dict[str, RepoSpec]:
    """All test repositories, built into `root` on first use; `bench=True` adds `bench/1gb`, `wan=True`
    the WAN benchmark's `bench/wan-*`, `demo=True` the DEMO_MODELS (in place of the same-named
    full-size repos)."""
    root = Path(root)
    build = root / f"build-{_build_key()}"
    extras = [name for name, wanted in (("bench", bench), ("wan", wan), ("demo", demo)) if wanted]
    manifests = [build / "manifest.json"] + [build / f"{name}.json" for name in extras]
    if not all(m.exists() for m in manifests):
        with _locked(root):
            if not manifests[0].exists():
                _build(root, build)
            for name, manifest in zip(extras, manifests[1:]):
                if not manifest.exists():
                    _write_manifest(manifest, build, _EXTRAS[name](build))
    return {spec.repo_id: spec for m in manifests for spec in _read_manifest(m, build)}


def _build_key() -> str:
    digest = hashlib.sha256()
    for source in _SOURCES:
        digest.update(source.read_bytes())
    for library in _LIBRARIES:
        digest.update(importlib.metadata.version(library).encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(root: Path, build: Path) -> None:
    """Build into a temporary directory, move it into place, and drop older builds."""
    for leftover in root.glob("tmp-*"):  # from builds that crashed (none runs: we hold the lock)
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = root / f"tmp-{os.getpid()}"
    _write_manifest(tmp / "manifest.json", tmp, _all_repos(tmp))
    tmp.rename(build)
    for stale in root.glob("build-*"):
        if stale != build:
            shutil.rmtree(stale, ignore_errors=True)


def _all_repos(build: Path) -> list[RepoSpec]:
    shapes = json.loads(SHAPES_FILE.read_text())["models"]
    tokenizer_dir = _tokenizer(build / "work" / "tokenizer")
    repos = [_tiny_family(build, family, tokenizer_dir) for family in TINY_CONFIGS]
    repos += [_special_repo(build, kind, tokenizer_dir) for kind in _SPECIAL]
    repos += [_virtual_repo(build, repo_id, entry) for repo_id, entry in shapes.items()]
    shutil.rmtree(build / "work")
    return [_with_dev_branch(build, r) if r.repo_id == DEV_BRANCH_REPO else r for r in repos]


def _write_manifest(path: Path, build: Path, repos: list[RepoSpec]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([spec.to_json(build) for spec in repos]))
    tmp.replace(path)


def _read_manifest(path: Path, build: Path) -> list[RepoSpec]:
    return [RepoSpec.from_json(data, build) for data in json.loads(path.read_text())]


# --- files -> RepoSpec -------------------------------------------------------------------------


def _repo_dir(build: Path, repo_id: str) -> Path:
    return build / "repos" / repo_id


def _repo_file(path: str, content: Content) -> RepoFile:
    """Hash a file the way the Hub reports it (sha256 and pointer blob id for LFS files)."""
    size = content.size
    if not is_lfs(path, size):
        return RepoFile(path, size, git_blob_sha1(content.read_bytes()), None, content)
    digest = hashlib.sha256()
    for chunk in content.iter_bytes():
        digest.update(chunk)
    sha256 = digest.hexdigest()
    return RepoFile(path, size, git_blob_sha1(lfs_pointer(sha256, size)), sha256, content)


def _virtual_file(repo_id: str, path: str, content: Content) -> RepoFile:
    """A zero-filled full-size file: its sha256 is a unique placeholder (hashing 140 GB is not an option)."""
    sha256 = hashlib.sha256(f"virtual {repo_id} {path} {content.size}".encode()).hexdigest()
    return RepoFile(path, content.size, git_blob_sha1(lfs_pointer(sha256, content.size)), sha256, content)


def _scan(repo_id: str, directory: Path, fills: dict[str, int] | None = None) -> dict[str, RepoFile]:
    """Every file under `directory`; paths in `fills` are headers followed by that many zero bytes."""
    fills = fills or {}
    files = {}
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        path = file.relative_to(directory).as_posix()
        content = Content(file, file.stat().st_size, fills.get(path, 0))
        files[path] = _virtual_file(repo_id, path, content) if path in fills else _repo_file(path, content)
    return files


def _params(files: dict[str, RepoFile]) -> dict[str, int] | None:
    """Parameters per dtype from the safetensors headers, as the Hub's `safetensors.parameters`."""
    counts: dict[str, int] = {}
    for file in files.values():
        if file.path.endswith(".safetensors"):
            for entry in _header_entries(file):
                counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + math.prod(entry["shape"])
    return counts or None


def _header_entries(file: RepoFile) -> list[dict[str, Any]]:
    with file.content.head.open("rb") as f:  # type: ignore[union-attr]
        prefix = f.read(8)
        return list(read_safetensors_header(prefix + f.read(int.from_bytes(prefix, "little"))).values())


def _spec(repo_id: str, files: dict[str, RepoFile], model_type: str | None, **meta: Any) -> RepoSpec:
    sha = Commit.sha_for(repo_id, files)
    license_ = meta.get("license", "apache-2.0")
    tags = ["transformers", "text-generation"]
    tags += [f"license:{license_}"] if license_ else []
    tags += [model_type] if model_type else []
    tags += ["safetensors"] if any(p.endswith(".safetensors") for p in files) else []
    return RepoSpec(
        repo_id, {sha: Commit(sha, files)}, {"main": sha, "v1.0": sha}, tags=tuple(tags), params=_params(files), **meta
    )


# --- tiny models -------------------------------------------------------------------------------


def _tokenizer(directory: Path) -> Path:
    """A small real byte-level BPE tokenizer, trained offline, saved as transformers files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_CONFIGS["llama"]["vocab_size"],
        show_progress=False,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(directory)
    return directory


def _save_tiny(
    directory: Path,
    family: str,
    tokenizer_dir: Path,
    *,
    chat: bool = False,
    overrides: dict[str, Any] | None = None,
    **save: Any,
) -> Any:
    """Save a tiny random model of `family` (+ tokenizer and model card) into `directory`; return the model."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    fields = {**TINY_CONFIGS[family], **(overrides or {})}
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory, **save)
    GenerationConfig.from_model_config(config).save_pretrained(directory)
    shutil.copytree(tokenizer_dir, directory, dirs_exist_ok=True)
    if chat:
        (directory / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    (directory / "README.md").write_text(f"---\nlicense: apache-2.0\n---\n# Tiny random {family}\n")
    return model


def _tiny_family(build: Path, family: str, tokenizer_dir: Path) -> RepoSpec:
    repo_id = f"tiny/{family}"
    directory = _repo_dir(build, repo_id)
    _save_tiny(directory, family, tokenizer_dir, chat=family in CHAT_FAMILIES)
    return _spec(repo_id, _scan(repo_id, directory), TINY_CONFIGS[family]["model_type"])


def _demo_repos(build: Path) -> list[RepoSpec]:
    work = build / "work-demo"
    tokenizer_dir = _tokenizer(work / "tokenizer")
    repos = []
    for repo_id, (family, overrides) in DEMO_MODELS.items():
        directory = build / "demo" / repo_id  # not _repo_dir: a same-named full-size repo lives there
        _save_tiny(directory, family, tokenizer_dir, overrides=overrides)
        repos.append(_spec(repo_id, _scan(repo_id, directory), TINY_CONFIGS[family]["model_type"]))
    shutil.rmtree(work)
    return repos


def _with_dev_branch(build: Path, spec: RepoSpec) -> RepoSpec:
    """Add a `dev` branch (also `refs/pr/1`) one commit ahead of main, with a different model card."""
    readme = build / "revs" / spec.repo_id / "dev" / "README.md"
    readme.parent.mkdir(parents=True)
    readme.write_text(f"# {spec.repo_id} (dev branch)\n")
    files = {**spec.files, "README.md": _repo_file("README.md", Content(readme, readme.stat().st_size))}
    dev = Commit(Commit.sha_for(spec.repo_id, files, parent=spec.sha), files)
    refs = {**spec.refs, "dev": dev.sha, "refs/pr/1": dev.sha}
    return dataclasses.replace(spec, commits={**spec.commits, dev.sha: dev}, refs=refs)


def _sharded(directory: Path, tokenizer_dir: Path) -> None:
    """Shards with an index, and (as the Llama repos have) original weights' params in a subfolder."""
    _save_tiny(directory, "llama", tokenizer_dir, max_shard_size="100KB")
    (directory / "original").mkdir()
    (directory / "original" / "params.json").write_text(json.dumps({"dim": 64, "n_layers": 2, "n_heads": 4}))


def _gated(directory: Path, tokenizer_dir: Path) -> None:
    _save_tiny(directory, "llama", tokenizer_dir)


def _private(directory: Path, tokenizer_dir: Path) -> None:
    _save_tiny(directory, "gpt2", tokenizer_dir)


def _pickle_only(directory: Path, tokenizer_dir: Path) -> None:
    import torch

    model = _save_tiny(directory, "gpt2", tokenizer_dir)
    (directory / "model.safetensors").unlink()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")


def _remote_code(directory: Path, tokenizer_dir: Path) -> None:
    _save_tiny(directory, "llama", tokenizer_dir)
    config = json.loads((directory / "config.json").read_text())
    config.update(
        model_type="tiny_remote",
        architectures=["TinyRemoteForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
            "AutoModelForCausalLM": "modeling_tiny_remote.TinyRemoteForCausalLM",
        },
    )
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "configuration_tiny_remote.py").write_text(REMOTE_CODE)
    (directory / "modeling_tiny_remote.py").write_text(REMOTE_CODE)


def _no_config(directory: Path, tokenizer_dir: Path) -> None:
    _save_tiny(directory, "llama", tokenizer_dir)
    (directory / "config.json").unlink()
    (directory / "generation_config.json").unlink()


def _big(directory: Path, tokenizer_dir: Path) -> None:
    """A ~50 MB safetensors file of deterministic pseudo-random bytes (one U8 tensor) and a config."""
    _save_tiny(directory, "gpt2", tokenizer_dir)
    header, size = safetensors_header([("data", "U8", (BIG_BYTES,))])
    (directory / "model.safetensors").write_bytes(header + random.Random(42).randbytes(size))


# repo id suffix -> (builder, model_type, RepoSpec fields)
_SPECIAL: dict[str, tuple[Callable[[Path, Path], None], str | None, dict[str, Any]]] = {
    "llama-sharded": (_sharded, "llama", {}),
    "gated": (_gated, "llama", {"gated": "manual", "license": "llama3"}),
    "private": (_private, "gpt2", {"private": True}),
    "pickle-only": (_pickle_only, "gpt2", {}),
    "remote-code": (_remote_code, "tiny_remote", {"tags": ("custom_code",)}),
    "no-config": (_no_config, None, {}),
    "big": (_big, "gpt2", {}),
}


def _special_repo(build: Path, kind: str, tokenizer_dir: Path) -> RepoSpec:
    builder, model_type, meta = _SPECIAL[kind]
    repo_id = f"tiny/{kind}"
    directory = _repo_dir(build, repo_id)
    builder(directory, tokenizer_dir)
    fields = {k: v for k, v in meta.items() if k != "tags"}
    spec = _spec(repo_id, _scan(repo_id, directory), model_type, **fields)
    return dataclasses.replace(spec, tags=spec.tags + tuple(meta.get("tags", ())))


# --- full-size and benchmark repos ---------------------------------------------------------------


def _virtual_repo(build: Path, repo_id: str, entry: dict[str, Any]) -> RepoSpec:
    directory = _repo_dir(build, repo_id)
    fills = write_virtual_repo(directory, repo_id, entry)
    spec = _spec(repo_id, _scan(repo_id, directory, fills), entry["config"]["model_type"])
    return dataclasses.replace(spec, virtual=True)


def _bench_repo(build: Path) -> RepoSpec:
    """`bench/1gb`: a 1 GiB safetensors file (one U8 tensor of a repeated pseudo-random MiB), real sha256."""
    repo_id = "bench/1gb"
    directory = _repo_dir(build, repo_id)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(TINY_CONFIGS["gpt2"], indent=2))
    files = _scan(repo_id, directory)
    header, size = safetensors_header([("data", "U8", (BENCH_BYTES,))])
    head = build / "bench-header.bin"
    head.write_bytes(header)
    pattern = build / "bench-pattern.bin"
    pattern.write_bytes(random.Random(7).randbytes(1 << 20))
    files["model.safetensors"] = _repo_file("model.safetensors", Content(head, len(header), size, pattern))
    return _spec(repo_id, files, "gpt2")


def _wan_repos(build: Path) -> list[RepoSpec]:
    """The WAN benchmark's workloads: `bench/wan-one-file` (one 1 GiB safetensors),
    `bench/wan-shards` (8 × 64 MiB and their index) and `bench/wan-small-files` (40 files of 20-800 KB).
    Each also has a config.json, and every file is one our download selects, so every tool fetches
    the same files."""
    one_file = _wan_repo(build, "bench/wan-one-file", {"model.safetensors": WAN_FILE_BYTES})
    shard_names = [f"model-{i:05d}-of-{WAN_SHARDS:05d}.safetensors" for i in range(1, WAN_SHARDS + 1)]
    shards = _wan_repo(build, "bench/wan-shards", dict.fromkeys(shard_names, WAN_SHARD_BYTES))
    return [one_file, shards, _wan_small_files(build)]


def _wan_repo(build: Path, repo_id: str, weights: dict[str, int]) -> RepoSpec:
    """A config, and safetensors files of one U8 tensor each (`weights`: path -> data bytes) whose data
    repeats a random block, with their index when there are several."""
    directory = _repo_dir(build, repo_id)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(TINY_CONFIGS["gpt2"], indent=2))
    tensors = {path: f"layers.{index}.weight" for index, path in enumerate(weights)}
    if len(weights) > 1:
        index = {
            "metadata": {"total_size": sum(weights.values())},
            "weight_map": {name: path for path, name in tensors.items()},
        }
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    files = _scan(repo_id, directory)
    for path, size in weights.items():
        seed = f"{repo_id}/{path}"
        header, data_bytes = safetensors_header([(tensors[path], "U8", (size,))])
        head = build / "wan-heads" / repo_id / path
        head.parent.mkdir(parents=True, exist_ok=True)
        head.write_bytes(header)
        pattern = build / "wan-patterns" / repo_id / path
        pattern.parent.mkdir(parents=True, exist_ok=True)
        pattern.write_bytes(random.Random(seed).randbytes(WAN_PATTERN_BYTES))
        files[path] = _repo_file(path, Content(head, len(header), data_bytes, pattern))
    return _spec(repo_id, files, "gpt2")


def _wan_small_files(build: Path) -> RepoSpec:
    """Many small files, as in a repo of sparse autoencoders: safetensors (LFS, from the CDN) of random
    sizes, and a vocabulary and merges (regular files, from the Hub itself)."""
    repo_id = "bench/wan-small-files"
    directory = _repo_dir(build, repo_id)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(repo_id)
    (directory / "config.json").write_text(json.dumps(TINY_CONFIGS["gpt2"], indent=2))
    (directory / "vocab.json").write_text(json.dumps({f"tok{i}_{rng.getrandbits(32):08x}": i for i in range(25_000)}))
    (directory / "merges.txt").write_text(
        "".join(f"{rng.getrandbits(24):06x} {rng.getrandbits(24):06x}\n" for _ in range(30_000))
    )
    for index in range(WAN_SMALL_SAFETENSORS):
        header, data_bytes = safetensors_header([(f"sae.{index}.weight", "U8", (rng.randint(*WAN_SMALL_BYTES),))])
        (directory / f"sae-{index:02d}.safetensors").write_bytes(header + rng.randbytes(data_bytes))
    return _spec(repo_id, _scan(repo_id, directory), "gpt2")


_EXTRAS: dict[str, Callable[[Path], list[RepoSpec]]] = {
    "bench": lambda build: [_bench_repo(build)],
    "wan": _wan_repos,
    "demo": _demo_repos,
}
