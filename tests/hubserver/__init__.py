"""A Hugging Face Hub-compatible test server and the repositories it serves."""

from .faults import Faults, RequestRecord
from .fixtures import build_fixtures, default_root
from .server import HubServer
from .spec import Commit, Content, RepoFile, RepoSpec
from .wan import WanProfile

__all__ = [
    "Commit",
    "Content",
    "Faults",
    "HubServer",
    "RepoFile",
    "RepoSpec",
    "RequestRecord",
    "WanProfile",
    "build_fixtures",
    "default_root",
]
