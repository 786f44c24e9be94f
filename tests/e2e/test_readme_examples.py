"""Every shell example of the README runs, as written, against the local stack (`make run`'s).

A README block of type `bash` or `sh` that talks to the local API (`http://127.0.0.1:3000`) is an
example: it is run by bash, in order, each block in its own shell, with a `curl` function in
front of the real one that points the README's address at this test's stack and records each
answer's HTTP status. Each example ends with a comment `# expect: <status> ...`: the statuses the
README documents for its requests, in order. An example without one, or whose requests answer
other statuses, fails the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from local.run import LocalStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LOCAL_API = "http://127.0.0.1:3000"
BLOCK = re.compile(r"^```(bash|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"^# expect:((?: [0-9]{3})+)\s*$", re.MULTILINE)
# In front of the real curl: the README's address becomes the stack's, and every answer's status
# is appended to $STATUSES (a file, so command substitutions count too).
PRELUDE = r"""
set -euo pipefail
curl() {
  local args=() out code
  for arg in "$@"; do args+=("${arg//http:\/\/127.0.0.1:3000/$BASE}"); done
  out=$(command curl -sS --max-time 30 -w '\n%{http_code}' "${args[@]}")
  code="${out##*$'\n'}"
  echo "$code" >> "$STATUSES"
  printf '%s\n' "${out%$'\n'*}"
}
"""


def examples() -> list[tuple[str, str]]:
    """(a name, the script) of every README block that calls the local API."""
    text = README.read_text()
    found = []
    for match in BLOCK.finditer(text):
        script = match[2]
        if LOCAL_API not in script or "curl " not in script:
            continue
        line = text[: match.start()].count("\n") + 1
        found.append((f"README.md:{line}", script))
    return found


EXAMPLES = examples()


def test_the_readme_has_an_example_for_each_flow() -> None:
    # Given the README / Then every flow a newcomer tries has a runnable example
    scripts = "\n".join(script for _, script in EXAMPLES)
    for flow in (
        "/charges",
        "/capture",
        "/refunds",
        "/cancel",
        "/reconcile",
        "/_sim/faults",
        "/card-setups",
        "/accounts/",
        "/subscriptions",
        "startAt",
        "nextAction",
    ):
        assert flow in scripts, f"no README example uses {flow}"
    assert "uuidgen" not in README.read_text()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(("where", "script"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_readme_example_answers_what_it_documents(
    where: str, script: str, local_stack: LocalStack, tmp_path: Path
) -> None:
    # Given an example and the statuses it documents
    expected = EXPECT.search(script)
    assert expected, f"{where}: the example documents no '# expect: <status> ...' line"
    statuses = tmp_path / "statuses"
    statuses.touch()
    # When it runs in bash against the local stack
    result = subprocess.run(
        ["/bin/bash", "-c", PRELUDE + script],
        env={"BASE": local_stack.url, "STATUSES": str(statuses), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it succeeds, and its requests answer the statuses the README says
    assert result.returncode == 0, f"{where}: exit {result.returncode}\n{result.stderr[-2000:]}"
    assert statuses.read_text().split() == expected[1].split(), (
        f"{where}: answered {statuses.read_text().split()}\n{result.stdout[-2000:]}"
    )
