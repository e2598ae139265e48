"""The README contract: .ci/run installs exactly as README.md says and runs README's test command."""

import re

from tests.conftest import REPO


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def test_ci_runs_the_readme_setup_and_test_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    setup = _bash_blocks(_section(readme, "Set up"))
    tests = _bash_blocks(_section(readme, "Test"))
    assert setup and tests
    ci_lines = {line.strip() for line in ci.splitlines()}
    for command in setup + tests:
        assert command in ci_lines, f"README command not run by .ci/run: {command}"


def test_readme_main_command_is_a_medrag_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    run = _bash_blocks(_section(readme, "Run it \\(offline, embedded model\\)"))
    assert run and run[0].startswith("medrag ")
