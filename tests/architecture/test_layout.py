"""Layout rules import-linter cannot see: the simulator embodies ePay, functions stay apart."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_simulator_never_imports_the_layer() -> None:
    # Given every module of the simulator / Then none imports our payments package
    files = list((ROOT / "local" / "epay_sim").rglob("*.py"))
    assert files
    for path in files:
        assert not any(m.split(".")[0] == "payments" for m in imported_modules(path)), path


def test_functions_never_import_each_other_and_hold_no_business_logic() -> None:
    functions = sorted(p for p in (ROOT / "functions").iterdir() if p.is_dir())
    names = {p.name for p in functions}
    assert functions
    for folder in functions:
        for path in folder.rglob("*.py"):
            modules = imported_modules(path)
            assert not any(m.split(".")[0] in names | {"functions", "app"} for m in modules), path
            # a handler never talks to AWS or ePay directly
            assert not any(m.split(".")[0] in {"boto3", "botocore", "urllib3"} for m in modules)


def test_layer_does_no_io_at_import_time() -> None:
    # Given a fresh interpreter with no AWS or service environment at all
    import os
    import subprocess
    import sys

    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "layers" / "payments")}
    package = ROOT / "layers" / "payments" / "payments"
    modules = sorted(
        ".".join(p.relative_to(package).with_suffix("").parts)
        for p in package.rglob("*.py")
        if p.name != "__init__.py"
    )
    assert len(modules) > 40
    code = "import " + ", ".join(f"payments.{m}" for m in modules)
    # When the whole layer is imported / Then nothing fails for lack of settings or network
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


PACKAGE = ROOT / "layers" / "payments" / "payments"
MAX_MODULE_LINES = 500


def test_every_layer_package_init_is_empty() -> None:
    # Given every package of the layer / Then its __init__.py is empty, so importing one domain
    # never loads another (cold start) and names are always imported from where they live
    inits = sorted(PACKAGE.rglob("__init__.py"))
    assert len(inits) >= 7
    for init in inits:
        assert init.read_text() == "", init.relative_to(ROOT)


def test_no_layer_module_outgrows_one_job() -> None:
    # Given every module of the layer / Then none is over the size one job fits in, and each
    # says that job in its docstring's first line
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        lines = path.read_text().splitlines()
        assert len(lines) <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {len(lines)} lines"
        assert lines[0].startswith('"""'), path.relative_to(ROOT)
        assert len(lines[0]) > 20, path.relative_to(ROOT)


def test_public_paths_the_service_hands_out_are_routes_of_the_template() -> None:
    # Given the paths PublicLinks owns (postLink, TermUrl, the 3DS page)
    from local.template import api_routes, function_url_routes, load_template
    from payments.charges import links

    owned = {
        ("GET", links.THREEDS_PAGE_PATH),
        ("POST", links.THREEDS_RETURN_PATH),
        ("GET", links.CARD_SETUP_PAGE_PATH),
    }
    postlinks = {links.POSTLINK_PATH, links.FAILURE_POSTLINK_PATH}
    # When template.yaml's API routes and its function URL's paths are read
    template = load_template(ROOT / "template.yaml")
    routes = {(r.method, r.resource) for r in api_routes(template)}
    url_paths = {r.resource for r in function_url_routes(template) if r.method in ("ANY", "POST")}
    # Then every URL we send a browser to is an API route, with the method it will use
    assert owned <= routes, owned - routes
    # And ePay's postLinks are paths of the postLink function's URL (not API routes)
    assert postlinks <= url_paths, postlinks - url_paths
    assert not {path for _, path in routes} & postlinks


def test_test_modules_have_unique_basenames() -> None:
    # Given every test module pytest collects (rootdir-relative imports, no packages)
    roots = [ROOT / "tests", ROOT / "clients" / "python" / "tests"]
    names = [path.name for root in roots for path in root.rglob("test_*.py")]
    # Then no two share a basename (pytest would refuse to import the second)
    assert sorted({n for n in names if names.count(n) > 1}) == []
