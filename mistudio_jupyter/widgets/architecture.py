"""The architecture viewer (the model page's view): memory per load option against this machine,
parameters by kind and per block, config and module tree, and the hook picker whose selection is live
in the kernel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets

from ..core.anatomy.hooks import HookPoint
from ..core.errors import InvalidArgument
from ._base import STATIC, ManagerWidget, action, manager_or_shared

if TYPE_CHECKING:
    from ..core.service import ModelManager


def _hooks_to_json(hooks: list[HookPoint], _widget: Any) -> list[dict[str, Any]]:
    return [hook.to_dict() for hook in hooks]


def load_architecture(
    manager: ModelManager, repo_or_id: str, *, revision: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """The `architecture`, `hooks` and `estimate` trait values of a repo id or catalog id."""
    return {
        "architecture": manager.architecture(repo_or_id, revision=revision, token=token),
        "hooks": manager.hook_points(repo_or_id, revision=revision, token=token),
        "estimate": manager.estimate(repo_or_id, revision=revision, token=token),
    }


class ArchitectureState(ManagerWidget):
    """Traits `architecture`, `hooks` (HookPoint objects; dicts in the view), `selected` (hook names,
    in network order, written by the picker) and `estimate` (memory per load option and whether it fits
    this machine, for the context and batch the view asks for with `{action: "estimate", context, batch}`)."""

    architecture = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    hooks = traitlets.List(traitlets.Instance(HookPoint)).tag(sync=True, to_json=_hooks_to_json)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    estimate = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    _shown: tuple[str, str | None] | None = None  # the repo or id, and revision, on view

    @action("estimate")
    def estimate_for(self, context: int = 0, batch: int = 1) -> None:
        """Estimate the shown model's memory again, with a KV cache for `context` tokens × `batch`."""
        if self._shown is None:
            raise InvalidArgument("no model is shown, so there is nothing to estimate")
        repo_or_id, revision = self._shown
        estimate = self.manager.estimate(repo_or_id, revision=revision, context=context, batch=batch)
        with self.changes() as open_:
            if open_:
                self.estimate = estimate

    @property
    def selected_hooks(self) -> list[HookPoint]:
        """The HookPoint objects of the selection, in network order."""
        names = set(self.selected)
        return [hook for hook in self.hooks if hook.name in names]

    def show(self, repo_or_id: str, *, revision: str | None = None, token: str | None = None) -> None:
        """Show another model: clear the view (and the selection) at once, then fill it in."""
        with self.changes() as open_:
            if not open_:
                return
            self.selected = []
            self.hooks = []
            self.architecture = None
            self.estimate = None
            self._shown = (repo_or_id, revision)
        loaded = load_architecture(self.manager, repo_or_id, revision=revision, token=token)
        with self.changes() as open_:
            if open_:
                self.hooks = loaded["hooks"]
                self.architecture = loaded["architecture"]
                self.estimate = loaded["estimate"]

    @traitlets.validate("selected")
    def _ordered_selection(self, proposal: traitlets.Bunch) -> list[str]:
        names = set(proposal["value"])
        if not self.hooks:
            return list(dict.fromkeys(proposal["value"]))
        unknown = names - {hook.name for hook in self.hooks}
        if unknown:
            raise traitlets.TraitError(f"not hook points of this model: {', '.join(sorted(unknown))}")
        return [hook.name for hook in self.hooks if hook.name in names]


class ArchitectureViewer(ArchitectureState):
    """Memory, parameters, module tree, config and hook picker of a model (repo id or catalog id).

    The picker's selection is `viewer.selected` (names) and `viewer.selected_hooks` (HookPoints);
    `viewer.hooks` lists every hook point. Each can go straight to `capture`:

    >>> viewer = ArchitectureViewer("tiny/gpt2"); viewer      # pick hooks in the view, then
    >>> with mistudio_jupyter.capture(model, viewer.selected) as acts: model(**inputs)
    """

    _esm = STATIC / "architecture_viewer.js"

    def __init__(
        self,
        repo_or_id: str | None = None,
        *,
        revision: str | None = None,
        token: str | None = None,
        manager: ModelManager | None = None,
        **kwargs: Any,
    ) -> None:
        manager = manager_or_shared(manager)
        if repo_or_id is not None:
            kwargs = {**load_architecture(manager, repo_or_id, revision=revision, token=token), **kwargs}
        super().__init__(manager, **kwargs)
        if repo_or_id is not None:
            self._shown = (repo_or_id, revision)
