"""The README's commands run as written: every line of its ```bash blocks is run by a test here.

`make` targets run as dry runs (`make -n`: the quick start's recipes exist and parse; the pipeline and
the suite themselves are what `test_pipeline.py` and `.ci/run` run), `--help` lines run in the
repository, and the DVC block runs whole, as one shell script, in a git+DVC copy of the project with
tiny params and this checkout's `.venv`. Commands meant only to be read (servers, GPUs, the real
corpus, remotes) sit in ```console blocks, which are not run.
"""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO

README = REPO / "README.md"
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def bash_blocks() -> list[list[str]]:
    """The README's ```bash blocks, each as its command lines (comments and blank lines dropped)."""
    blocks = []
    for block in BASH_BLOCK.findall(README.read_text()):
        lines = [re.split(r"\s+#\s", line, maxsplit=1)[0].strip() for line in block.splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def kind(command: str) -> str:
    if command.startswith("make "):
        return "make"
    if command.endswith("--help"):
        return "help"
    if command == ". .venv/bin/activate" or command.startswith("dvc "):
        return "dvc"
    return "unknown"


def test_every_readme_command_is_run_by_a_test():
    commands = [c for block in bash_blocks() for c in block]
    assert {"make run", "make test", ".venv/bin/ser --help"} <= set(commands)
    unknown = [c for c in commands if kind(c) == "unknown"]
    assert not unknown, f"README ```bash commands no test runs (run them here, or make the block ```console): {unknown}"


def test_quick_start_make_targets_exist_and_parse():
    for command in (c for block in bash_blocks() for c in block if kind(c) == "make"):
        proc = subprocess.run(["make", "-n", *command.split()[1:]], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}: {proc.stderr}"
        assert proc.stdout.strip(), f"{command}: an empty recipe"


def test_help_commands_run_as_written():
    for command in (c for block in bash_blocks() for c in block if kind(c) == "help"):
        proc = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
        assert "usage" in proc.stdout.lower(), f"{command}: no usage text"


def dvc_blocks_script() -> str:
    """The README's blocks of DVC commands as one shell script (`test_pipeline.py` runs it in a project copy)."""
    blocks = [b for b in bash_blocks() if any(kind(c) == "dvc" for c in b)]
    assert blocks, "the README shows no DVC commands"
    return "\n".join(line for block in blocks for line in block)


def byo_blocks() -> tuple[str, str]:
    """The README's "Bring your own corpus" labels table (```text) and params (```yaml), as written."""
    section = README.read_text().split("### Bring your own corpus", 1)[1].split("\n### ", 1)[0]
    table = re.search(r"^```text\n(.*?)^```", section, re.S | re.M)
    params = re.search(r"^```yaml\n(.*?)^```", section, re.S | re.M)
    assert table and params, "the section shows a labels table and a params block"
    return table.group(1), params.group(1)


def test_the_bring_your_own_corpus_example_is_read_as_written(tmp_path):
    import numpy as np
    import soundfile as sf
    import yaml

    from ser.config import parse_params
    from ser.data.sources import resolve_source

    table, block = byo_blocks()
    lines = table.strip().splitlines()
    assert len(lines) - 1 == 4  # a header and four clips
    params = yaml.safe_load(block)
    folder = tmp_path / "mycalls"
    for row in lines[1:]:
        (folder / row.split(",")[0]).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / row.split(",")[0], np.zeros(16000, np.float32), 16000)
    (folder / "labels.csv").write_text(table)
    mine = params["data"]["sources"][-1]
    mine["path"] = str(folder)
    data = parse_params(params).data  # the block is valid params as written
    source = resolve_source(data.corpora[-1], data.synthetic)
    clips, left_out = source.clips(folder)
    assert source.name == "calls" and source.kind == "labelled" and source.facts().licence == "proprietary"
    assert [c.emotion for c in clips] == ["angry", "neutral", "happy", "sad"] and not left_out
    assert {c.speaker for c in clips} == {"agent07", "agent12"}
