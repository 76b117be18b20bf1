"""ModelManager: the one facade that every front end (REST, widgets, CLI, magics) calls."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, ModelRecord
from .errors import EntryNotFound, InvalidArgument, NotFound, UnsafeRepo
from .hub import HubClient, validate_token
from .options import ACTIVE_STATUSES, LoadChoice, load_choice
from .records import valid_id
from .settings import Settings
from .snapshot import local_tensors, read_json
from .store import DownloadRequest, LocalStore, ModelStore, open_store, valid_entry

if TYPE_CHECKING:
    import pandas

    from .anatomy.hooks import HookPoint
    from .downloads.manager import DownloadHandle, DownloadManager


class ModelManager:
    """Preview, download, catalogue, inspect and load Hugging Face models.

    >>> manager = ModelManager()                      # settings from the environment
    >>> manager.preview("google/gemma-2-2b")["memory"]["bnb-4bit"]["total_bytes"]
    >>> handle = manager.download("google/gemma-2-2b", option="bnb-4bit"); handle.wait()

    Its catalog and downloads are this process's (`core.store.LocalStore`), or a team store's when
    `MISTUDIO_STORE_URL` is set (`core.remote.RemoteStore`); everything else works the same either way.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings.from_env(**overrides)
        self.hub = HubClient(self.settings)
        self.store: ModelStore = open_store(self.settings, self.hub)
        self.changes = self.store.changes  # one poller for this manager's download handles, widgets and events
        self.leases = self.store.leases

    def close(self) -> None:
        self.store.close()

    @property
    def remote(self) -> bool:
        """Whether the catalog and downloads are a team store's (`MISTUDIO_STORE_URL`)."""
        return not isinstance(self.store, LocalStore)

    @property
    def catalog(self) -> Catalog:
        """This process's catalog (single-user mode, or the team store service itself)."""
        return self._local().catalog

    @property
    def downloads(self) -> DownloadManager:
        """The download jobs of this process's catalog (started lazily)."""
        return self._local().downloads

    def _local(self) -> LocalStore:
        if not isinstance(self.store, LocalStore):
            raise InvalidArgument("the catalog and downloads are the team store's (MISTUDIO_STORE_URL)")
        return self.store

    # -- catalog -------------------------------------------------------------------------------

    def get(self, model_id: str) -> ModelRecord:
        """The catalog entry with this id (`interrupted` at once if its download worker is gone)."""
        return self.store.get(model_id)  # type: ignore[return-value]

    def get_many(self, model_ids: list[str]) -> list[ModelRecord]:
        """The entries with these ids, as they are now (ids not found are left out)."""
        return self.store.get_many(model_ids)  # type: ignore[return-value]

    def list(self, **filters: Any) -> list[ModelRecord]:
        """Catalog entries matching the filters (family, quantization, status, min_params,
        max_params, q, sort, limit, offset), with the models that appeared in the cache adopted."""
        return self.store.list(**filters)  # type: ignore[return-value]

    def list_versions(self, **filters: Any) -> list[tuple[str, dt.datetime]]:
        """The id and last update of each entry `list(**filters)` returns, in its order."""
        return self.store.list_versions(**filters)

    def dataframe(self, **filters: Any) -> pandas.DataFrame:
        """The catalog entries as a pandas DataFrame, one row per entry."""
        return records_dataframe(self.list(**filters))

    def adopt_cache(self, *, if_changed: bool = False) -> list[ModelRecord]:
        """Add the complete models already in the Hugging Face cache as ready entries; returns them.

        With `if_changed`, only when the cache changed since the last adoption by any process (a few
        stat calls per repo tell; the fingerprint is kept here and in the catalog). A team store adopts
        its own cache: through it, this adds nothing.
        """
        return self.store.adopt_cache(if_changed=if_changed)  # type: ignore[return-value]

    def add(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        option: str | None = None,
        quantization: str | None = None,
        dtype: str | None = None,
        name: str | None = None,
        token: str | None = None,
        requested_by: str | None = None,
    ) -> ModelRecord:
        """Create a pending entry (or return the existing one with the same repo, revision and options).

        How it will be loaded: `option` as the memory table names it (fp32, fp16, bf16, bnb-8bit, bnb-4bit),
        or the older `quantization` and `dtype` (default none, auto). A new entry is created only after
        the Hub confirms that the repo and revision exist (one round trip; `token` is used for it and not
        kept). A gated repo can be added without access. `requested_by` names the user a new entry is for
        (through a team store, the store names the user its token belongs to).
        """
        checked_revision, choice = valid_entry(repo_id, revision, option, quantization, dtype)
        entry = {"option": option, "quantization": quantization, "dtype": dtype, "name": name, "token": token}
        return self.store.add(repo_id, checked_revision, choice, **entry, requested_by=requested_by)  # type: ignore[return-value]

    def resolve(self, repo_or_id: str) -> ModelRecord | None:
        """The catalog entry named by an id, else the newest entry of a repo id; None when neither."""
        return self.store.resolve(repo_or_id)  # type: ignore[return-value]

    # -- downloads -----------------------------------------------------------------------------

    def download(
        self,
        repo_or_id: str,
        *,
        revision: str | None = None,
        option: str | None = None,
        quantization: str | None = None,
        dtype: str | None = None,
        token: str | None = None,
        allow_pickle: bool = False,
        allow_remote_code: bool = False,
        on_progress: Any = None,
        requested_by: str | None = None,
    ) -> DownloadHandle:
        """Download a repo revision (or resume a catalog entry) in a child process; joins a running job.

        Returns at once; `handle.wait()` gives the ready record or raises the job's error, and
        `on_progress(record)` is called on every progress or status change. `option`, `quantization` and
        `dtype` are as in `add`. A download that cannot start (no such repo or revision, a rejected token,
        a gated repo and no token) raises at once and leaves no entry behind. `requested_by` names the
        user who asked; it is kept on a new entry, or on an existing one that names nobody yet. Through a
        team store, the store downloads and the handle follows it.
        """
        # A token no HTTP header can carry is refused before anything else. HF_TOKEN and the saved login
        # are checked where they are first used, after a new download has started its worker.
        validate_token(token or None)
        request = DownloadRequest(
            revision=revision,
            option=option,
            quantization=quantization,
            dtype=dtype,
            token=token,
            allow_pickle=allow_pickle,
            allow_remote_code=allow_remote_code,
            on_progress=on_progress,
            requested_by=requested_by,
        )
        return self.store.download(repo_or_id, request)

    def resume(self, model_id: str, *, token: str | None = None) -> DownloadHandle:
        """Continue a cancelled, failed or interrupted download from the bytes on disk."""
        self.hub.resolve_token(token)
        return self.store.resume(valid_id(model_id), token=token)

    def cancel(self, model_id: str, *, discard: bool = False) -> ModelRecord:
        """Stop a download within a second, from any process; `discard` also removes its partial files."""
        return self.store.cancel(valid_id(model_id), discard=discard)  # type: ignore[return-value]

    def delete(self, model_id: str, *, force: bool = False) -> dict[str, Any]:
        """Remove an entry and the cached files no other entry shares: {id, freed_bytes}.

        An entry that a running process has loaded (it holds a lease) is a Conflict naming who, unless `force`.
        """
        return self.store.delete(valid_id(model_id), force=force)

    def record_action(self, user: str, action: str, record: ModelRecord | None = None) -> None:
        """Add to the audit log that `user` did `action` (download, resume, cancel, delete, prune); a team
        store records what its users do itself."""
        self.store.record_action(user, action, record)

    def audit(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The audit log, newest first: {id, at, user, action, model_id, repo_id, revision}."""
        return self.store.audit(limit=limit, offset=offset)

    def permissions(self) -> list[str]:
        """What this user may do with the catalog, of `read`, `download`, `delete` and `admin` (a forced
        delete): everything in single-user mode; with a team store, what the Hub's scopes grant."""
        return self.store.permissions()

    def cache_info(self) -> dict[str, Any]:
        """Size of the model cache, its partial files and the free space on its volume."""
        return self.store.cache_info()

    def prune_cache(self) -> dict[str, Any]:
        """Remove orphaned partial downloads: {removed: [paths], freed_bytes}."""
        return self.store.prune_cache()

    # -- preview, estimates, loading -----------------------------------------------------------

    def preview(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        token: str | None = None,
        context: int = 0,
        batch: int = 1,
    ) -> dict[str, Any]:
        """Everything worth knowing before a download, from config.json and the safetensors headers only:
        architecture, exact parameters, files, warnings, memory per load option and whether it fits here."""
        from .preview import build_preview

        return build_preview(
            self.hub,
            repo_id,
            revision,
            token,
            context=_count("context", context),
            batch=_count("batch", batch, minimum=1),
        )

    def estimate(
        self,
        repo_or_id: str,
        *,
        revision: str | None = None,
        token: str | None = None,
        context: int = 0,
        batch: int = 1,
    ) -> dict[str, Any]:
        """Memory per load option ({memory, fit, system}) of a catalog entry (read locally) or a Hub repo."""
        from .anatomy.sizing import estimate_memory
        from .system import fit_verdict, system_resources

        context, batch = _count("context", context), _count("batch", batch, minimum=1)
        record = self.resolve(repo_or_id) if revision is None else None
        if record is None or record.status != "ready":
            preview = self.preview(
                record.repo_id if record else repo_or_id, revision=revision, token=token, context=context, batch=batch
            )
            return {key: preview[key] for key in ("repo_id", "params", "memory", "fit", "system")}
        config, tensors = self._config_and_tensors(repo_or_id, record, None, token, with_tensors=True)
        resources = system_resources()
        memory = estimate_memory(
            config,
            {name: (info.dtype, info.shape) for name, info in (tensors or {}).items()},
            context=context,
            batch=batch,
            device="cuda" if resources["gpus"] else "cpu",
        )
        return {
            "repo_id": record.repo_id,
            "params": record.params,
            "memory": {option: value.to_dict() for option, value in memory.items()},
            "fit": fit_verdict(memory, resources),
            "system": resources,
        }

    def system(self) -> dict[str, Any]:
        """This machine's GPUs and RAM (CUDA is never initialised), and the cache's disk."""
        from .system import system_resources

        return {**system_resources(), "disk": self.cache_info()}

    def load(
        self,
        model_id: str,
        *,
        option: str | None = None,
        quantization: str | None = None,
        dtype: str | None = None,
        device_map: str | dict[str, Any] | None = "auto",
        double_quant: bool = False,
        trust_remote_code: bool = False,
    ) -> tuple[Any, Any]:
        """Load a downloaded entry from the local cache as (model, tokenizer).

        `option` names how, as the memory table does (fp32 … bnb-4bit-dq), or the older `quantization` and
        `dtype` do, each defaulting to the entry's own. The measured memory (footprint + quant state) and load
        time are recorded on the entry. A download in progress is waited for. While the model lives, this
        process holds a lease on the entry, so it is not deleted under it (`mistudio_jupyter.release(model)`
        ends the lease sooner).
        """
        from .loading import load_model

        record = self.resolve(model_id)
        if record is None:
            raise NotFound(f"no catalog entry {model_id!r}; see `mistudio list`")
        choice = load_choice(option, quantization, dtype, default=LoadChoice(record.quantization, record.dtype))
        record = self.store.refresh(record)
        if record.status in ACTIVE_STATUSES and record.worker:
            record = self.store.join(record).wait()
        with self.leases.holding(record) as lease:
            loaded = load_model(
                snapshot_path(record),
                quantization=choice.quantization,
                dtype=choice.dtype,
                device_map=device_map,
                double_quant=double_quant or choice.double_quant,
                trust_remote_code=trust_remote_code,
            )
            lease.attach(loaded.model)
        self.store.record_load(record.id, loaded.measured_memory_bytes, loaded.load_time_s)
        return loaded.model, loaded.tokenizer

    # -- anatomy -------------------------------------------------------------------------------

    def architecture(self, repo_or_id: str, *, revision: str | None = None, token: str | None = None) -> dict[str, Any]:
        """Module tree, parameter counts and summary of a catalog entry or any Hub repo.

        Built from the config on the meta device and cross-checked with the safetensors headers:
        no weights are read, so it works before a download and for 70B models.
        """
        record = self.resolve(repo_or_id) if revision is None else None
        if record is not None and record.architecture:
            return record.architecture
        from .anatomy.architecture import describe_architecture

        config, tensors = self._config_and_tensors(repo_or_id, record, revision, token, with_tensors=True)
        return describe_architecture(config, tensors)

    def hook_points(
        self,
        repo_or_id: str,
        *,
        revision: str | None = None,
        token: str | None = None,
        include_modules: bool = False,
    ) -> list[HookPoint]:
        """The canonical TransformerLens/SAELens hook points of a model (plus raw module hooks if asked)."""
        from .anatomy.hooks import hook_points

        record = self.resolve(repo_or_id) if revision is None else None
        config, _ = self._config_and_tensors(repo_or_id, record, revision, token, with_tensors=False)
        return hook_points(config, modules=include_modules)

    def _config_and_tensors(
        self,
        repo_or_id: str,
        record: ModelRecord | None,
        revision: str | None,
        token: str | None,
        *,
        with_tensors: bool,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if record is not None and record.status == "ready" and record.file_path:
            snapshot = Path(record.file_path)
            config = read_json(snapshot / "config.json")
            if config is None:
                raise EntryNotFound(f"{record.name} has no readable config.json in {snapshot}")
            if config.get("auto_map"):
                raise UnsafeRepo(f"{record.name} needs custom code from the repo (auto_map), which mistudio never runs")
            return config, local_tensors(snapshot) if with_tensors else None
        repo_id = record.repo_id if record is not None else repo_or_id
        revision = record.revision if record is not None else revision
        commit = self.hub.resolve_commit(repo_id, revision, token)
        config = self.hub.read_json(repo_id, commit, "config.json", token)
        if config is None:
            raise EntryNotFound(f"{repo_id} has no config.json, so its architecture cannot be read")
        return config, self.hub.safetensors_tensors(repo_id, commit, token) if with_tensors else None


def records_dataframe(records: list[ModelRecord]) -> pandas.DataFrame:
    """Catalog entries as a DataFrame with the columns a researcher scans first."""
    import pandas

    columns = [
        "id",
        "name",
        "repo_id",
        "revision",
        "status",
        "quantization",
        "dtype",
        "family",
        "params",
        "size_bytes",
        "progress",
        "updated_at",
    ]
    return pandas.DataFrame([record.to_dict() for record in records], columns=columns)


def _count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return value


def snapshot_path(record: ModelRecord) -> Path:
    if record.status != "ready" or not record.file_path:
        raise InvalidArgument(f"{record.name} is not downloaded yet (status: {record.status})")
    return Path(record.file_path)
