"""The built wheel carries the prebuilt JupyterLab extension, the widget bundle and the server config,
so a user installs it with no node: checked in a fresh environment whose PATH has no node."""

from __future__ import annotations

import json
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERSION = "9.8.7"  # written into the copy's package.json only: the one place the version lives


def _run(*args: str, **kwargs) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)


def _checkout_at_version(tmp_path: Path, version: str) -> Path:
    """A copy of the checkout (with its JS build outputs) whose package.json says `version`."""
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            "node_modules",
            ".venv",
            ".demo",
            "lib",
            "test-artifacts",
            "__pycache__",
            "*.egg-info",
            "_version.py",
        ),
    )
    package = json.loads((source / "package.json").read_text())
    (source / "package.json").write_text(json.dumps({**package, "version": version}, indent=2) + "\n")
    return source


def test_wheel_installs_a_working_extension_without_node(tmp_path: Path) -> None:
    source = _checkout_at_version(tmp_path, VERSION)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source))
    (wheel,) = (tmp_path / "dist").glob(f"mistudio_jupyter-{VERSION}-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith("labextensions/mistudio-jupyter/package.json") for name in names)
    assert any(name.endswith("jupyter_server_config.d/mistudio_jupyter.json") for name in names)
    assert "mistudio_jupyter/widgets/static/architecture_viewer.js" in names

    # A fresh prefix that sees the test environment's packages but not its data dirs or our source tree.
    prefix = tmp_path / "env"
    _run(sys.executable, "-m", "venv", "--without-pip", str(prefix))
    packages = next((prefix / "lib").glob("python3*/site-packages"))
    (packages / "outer.pth").write_text(site.getsitepackages()[0] + "\n")
    # --ignore-installed: pip must not uninstall the test environment's own (editable) install.
    _run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--ignore-installed",
        "-q",
        "--prefix",
        str(prefix),
        str(wheel),
    )
    no_node = tmp_path / "bin"
    no_node.mkdir()
    env = {
        "PATH": str(no_node),
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "NO_COLOR": "1",
    }
    python = str(prefix / "bin" / "python")
    where = _run(python, "-c", "import mistudio_jupyter as m; print(m.__file__, m.__version__)", env=env, cwd=tmp_path)
    assert str(prefix) in where and where.split()[-1] == VERSION
    labextensions = _run(python, "-m", "jupyterlab.labextensions", "list", env=env, cwd=tmp_path)
    assert re.search(r"mistudio-jupyter v\S+ enabled OK", labextensions), labextensions
    server = _run(python, "-m", "jupyter_server.extension.serverextension", "list", env=env, cwd=tmp_path)
    assert re.search(rf"mistudio_jupyter {re.escape(VERSION)} OK", server), server
    assert Path(sys.executable).with_name("mistudio").exists()  # the test environment is untouched
