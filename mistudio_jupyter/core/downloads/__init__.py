"""Downloads: resumable, verified, cancellable fetches into the Hugging Face cache, one child process per job."""

from .engine import Engine, Progress
from .manager import DownloadHandle, DownloadManager

__all__ = ["DownloadHandle", "DownloadManager", "Engine", "Progress"]
