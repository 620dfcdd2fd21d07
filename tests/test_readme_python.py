"""The README's Python section: its first code block runs as written, from a fresh directory (trains about a minute
on MNIST, loads the run back, samples with two samplers, scores)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block() -> str:
    text = README.read_text()
    section = text[text.index("\n## Python\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(python_block())
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if "read with confidence" in line]
    assert [line.split(",")[0] for line in lines] == ["ddim", "dpm-solver++"], out.stdout
    assert (tmp_path / "runs" / "notebook" / "ddim.png").is_file()
    assert (tmp_path / "runs" / "notebook" / "dpm-solver++.png").is_file()
    assert out.stdout.splitlines()[0].startswith("Denoiser(UNet")
