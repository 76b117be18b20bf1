"""Start-up cost: `import mistudio_jupyter` and IPython + `%load_ext mistudio_jupyter`, each in a fresh interpreter,
against peers measured the same way (`import huggingface_hub`, which it builds on; `%load_ext autoreload`,
a stock IPython extension). Also checks that neither pulls in torch.

    .venv/bin/python benchmarks/bench_import.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, fresh_seconds  # noqa: E402

LOAD_EXT = (
    "from IPython.core.interactiveshell import InteractiveShell; s = InteractiveShell.instance(); "
    "s.run_line_magic('load_ext', {name!r})"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    result = {
        "import_s": fresh_seconds("import mistudio_jupyter", args.repeat),
        "import_peer_huggingface_hub_s": fresh_seconds("import huggingface_hub", args.repeat),
        "load_ext_s": fresh_seconds(LOAD_EXT.format(name="mistudio_jupyter"), args.repeat),
        "load_ext_peer_autoreload_s": fresh_seconds(LOAD_EXT.format(name="autoreload"), args.repeat),
    }
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_EXT.format(name="mistudio_jupyter") + "; import sys; print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    result["torch_imported"] = check.stdout.strip().splitlines()[-1] == "True"
    print(
        f"import mistudio_jupyter: {result['import_s'] * 1000:.0f} ms "
        f"(import huggingface_hub: {result['import_peer_huggingface_hub_s'] * 1000:.0f} ms)"
    )
    print(
        f"%load_ext mistudio_jupyter: {result['load_ext_s'] * 1000:.0f} ms "
        f"(%load_ext autoreload: {result['load_ext_peer_autoreload_s'] * 1000:.0f} ms); torch imported: "
        f"{result['torch_imported']}"
    )
    print(json.dumps({"benchmark": "import", **result}))


if __name__ == "__main__":
    main()
