"""The docs say what the code does: settings, routes, error codes, modules, make targets and links.

Each test reads the code's own definitions (the settings dataclass, the CLI's options, gunicorn.conf.py,
the Flask URL map, the error classes, the Makefile) and the page that documents them, and fails on a
drift either way: a setting, route or code missing from its page, a default or bound that differs, a
documented error code the code no longer has, a link to a page or heading that is not there.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import typing
from pathlib import Path
from typing import Any

import click
import pytest

from api import create_app
from api import errors as api_errors
from api.cli import main as cli_main
from tests.test_containers import APP_DIR, env_example
from worker.errors import ERROR_CODES
from worker.settings import Settings, env_names

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
API = DOCS / "api.md"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "bench" / "results" / "HISTORY.md"]
EMPTY = {"unset", "empty"}  # how a page writes a default of None or ""
MODEL_PATHS = {"model_path", "face_detector"}  # defaults beside the code: models/ here, /app/models in images


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(text: str, start: str, stop: str) -> str:
    return text[text.index(start):text.index(stop, text.index(start))]


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows whose first cell is one `NAME`: NAME -> the other cells."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and (match := re.fullmatch(r"`([A-Za-z0-9_]+)`", cells[0])):
            rows[match[1]] = cells[1:]
    return rows


def documented_value(cell: str) -> str:
    """A default as a page writes it: `value`, or unset/empty for none."""
    if cell in EMPTY:
        return ""
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"write a default as `value`, unset or empty, not {cell!r}"
    return match[1]


def same_default(field: str, value: str, base: Path) -> bool:
    """Whether ``value``, as the environment would give it, reads as the field's default."""
    default = getattr(Settings(), field)
    if field in MODEL_PATHS:
        return base / default.relative_to(ROOT) == Path(value) if Path(value).is_absolute() \
            else ROOT / value == default
    return getattr(Settings(**{field: value}), field) == default


def bounds(field: dataclasses.Field[Any]) -> list[str]:
    """The words a page must show for a field's bounds and choices."""
    words = [f"{sign} {limit:g}" for key, sign in (("ge", ">="), ("gt", ">"), ("le", "<="))
             if (limit := field.metadata.get(key)) is not None]
    kind = typing.get_type_hints(Settings)[field.name]
    if typing.get_origin(kind) is typing.Literal:
        words += [f"`{choice}`" for choice in typing.get_args(kind)]
    if kind is bool:
        words.append("true or false")
    return words


# -- settings ---------------------------------------------------------------------------------------


def environment_reads() -> dict[str, str | None]:
    """Every environment variable read by name in api/, worker/ and gunicorn.conf.py: name -> the
    default it is read with (None: none, or set by the code with setdefault)."""
    reads: dict[str, str | None] = {}
    for path in [*ROOT.glob("api/*.py"), *ROOT.glob("worker/**/*.py"), ROOT / "gunicorn.conf.py"]:
        tree = ast.parse(read(path))
        constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                     for target in node.targets if isinstance(target, ast.Name)
                     and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                    and node.func.attr in ("get", "getenv", "setdefault")
                    and ast.unparse(node.func.value) in ("os.environ", "os")):
                continue
            name = node.args[0].value if isinstance(node.args[0], ast.Constant) else \
                constants.get(getattr(node.args[0], "id", ""))
            assert isinstance(name, str), f"{path.name}: {ast.unparse(node)}"
            default = node.args[1].value if len(node.args) > 1 and node.func.attr != "setdefault" else None
            reads.setdefault(name, default)
    return reads


def cli_envvars() -> dict[str, str | None]:
    """The CLI's options read from the environment: name -> their default."""
    found: dict[str, str | None] = {}

    def walk(command: click.Command) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                found[param.envvar] = None if param.default is None else str(param.default)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(cli_main)
    return found


def test_every_setting_is_in_the_configuration_page_with_its_default_and_bounds() -> None:
    rows = table_rows(section(read(CONFIGURATION), "## The settings", "\n## "))
    for field in dataclasses.fields(Settings):
        name = env_names(field.name)[0]
        assert name in rows, f"docs/configuration.md: {name} is not in the settings table"
        default, accepts = rows[name][0], rows[name][1]
        assert same_default(field.name, documented_value(default), ROOT), \
            f"docs/configuration.md: {name}'s default {default} is not the code's {getattr(Settings(), field.name)!r}"
        for word in bounds(field):
            assert word in accepts, f"docs/configuration.md: {name} accepts {accepts!r}, lacking {word!r}"
    extra = set(rows) - {env_names(field.name)[0] for field in dataclasses.fields(Settings)}
    assert not extra, f"docs/configuration.md's settings table has {sorted(extra)}, which no setting reads"


def test_every_setting_is_in_env_example_with_its_default() -> None:
    active, commented = env_example()
    examples = {match[1]: match[2] for match in re.finditer(r"^# ([A-Z][A-Z0-9_]*)=(.*)$",
                                                            read(ROOT / ".env.example"), re.M)}
    for field in dataclasses.fields(Settings):
        name = env_names(field.name)[0]
        assert name in active or name in commented, f".env.example lacks {name}"
        if name in active:
            assert same_default(field.name, active[name], Path(APP_DIR)), \
                f".env.example: {name}={active[name]} is not the code's default"
        elif field.name == "redis_url":  # compose builds its own (the redis service); the code's default is named
            assert f"the code's default is {Settings().redis_url}" in read(ROOT / ".env.example")
        elif getattr(Settings(), field.name) not in (None, "", ()):  # commented: shows the default
            assert same_default(field.name, examples[name], Path(APP_DIR)), f".env.example: # {name}="


def test_every_other_variable_the_code_reads_is_documented_with_its_default() -> None:
    """The CLI's and gunicorn.conf.py's variables, and any other the code reads by name."""
    text = read(CONFIGURATION)
    rows = table_rows(text)
    active, _ = env_example()
    examples = {match[1]: match[2] for match in re.finditer(r"^# ([A-Z][A-Z0-9_]*)=(.*)$",
                                                            read(ROOT / ".env.example"), re.M)}
    settings = {env_names(field.name)[0] for field in dataclasses.fields(Settings)}
    reads = environment_reads()
    assert "FER_API_BIND" in reads and "PROMETHEUS_MULTIPROC_DIR" in reads  # the scan sees them
    with_defaults = {name: default for name, default in (reads | cli_envvars()).items()
                     if name not in settings and (default is not None or name in cli_envvars())}
    for name in reads:
        assert f"`{name}`" in text, f"docs/configuration.md does not mention {name}"
    for name, default in with_defaults.items():
        assert name in rows, f"docs/configuration.md: {name} is not in a table"
        shown = documented_value(rows[name][0])
        assert shown == (default or ""), f"docs/configuration.md: {name}'s default {shown!r}, the code's {default!r}"
        value = active.get(name, examples.get(name))
        assert value is not None, f".env.example lacks {name}"
        assert value == default or (default is None and name not in active), f".env.example: {name}={value}"


# -- the API ---------------------------------------------------------------------------------------


def test_every_route_is_in_the_api_page() -> None:
    text = read(API)
    endpoints = section(text, "## Endpoints", "\n## ")
    app = create_app(Settings())
    for rule in app.url_map.iter_rules():
        path = re.escape(re.sub(r"<[^>]+>", "\0", rule.rule)).replace("\0", "<[a-z_]+>")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            assert re.search(rf"`{method} {path}`", endpoints), f"docs/api.md: no `{method} {rule.rule}`"


def api_error_codes() -> set[tuple[int, str]]:
    """(status, code) of every error the API raises, read from api/'s source."""
    statuses = {name: cls.STATUS for name, cls in vars(api_errors).items()
                if isinstance(cls, type) and issubclass(cls, api_errors.ApiError) and hasattr(cls, "STATUS")}
    codes = {(cls.STATUS, cls.CODE) for name, cls in vars(api_errors).items()
             if name in statuses and not name.startswith("_") and cls is not api_errors.UnprocessableUrl}
    for path in ROOT.glob("api/*.py"):
        for node in ast.walk(ast.parse(read(path))):
            if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "HTTP_CODES":
                codes |= set(ast.literal_eval(node.value).items())
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func)
            literal = [kw.value.value for kw in node.keywords
                       if kw.arg == "code" and isinstance(kw.value, ast.Constant)]
            if called in statuses and literal:
                codes.add((statuses[called], literal[0]))
            if called == "ApiError" and all(isinstance(arg, ast.Constant) for arg in node.args[:2]):
                codes.add((node.args[0].value, node.args[1].value))
    return codes


def test_every_error_code_is_in_the_api_page_and_no_other() -> None:
    text = read(API)
    per_url = section(text, "### Per URL", "### Per request")
    per_request = section(text, "### Per request", "### URL safety")
    documented_url = set(re.findall(r"^\| `(\w+)` \|", per_url, re.M))
    missing, stale = set(ERROR_CODES) - documented_url, documented_url - set(ERROR_CODES)
    assert not missing and not stale, f"docs/api.md per-URL codes: missing {missing}, stale {stale}"
    documented = {(int(status), code) for status, code in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", per_request, re.M)}
    codes = api_error_codes()
    assert (400, "invalid_callback_url") in codes and (500, "internal_error") in codes  # the scan sees them
    missing, stale = codes - documented, documented - codes
    assert not missing and not stale, f"docs/api.md per-request codes: missing {missing}, stale {stale}"


def test_every_endpoint_label_of_the_api_metrics_is_in_the_operations_page() -> None:
    metrics = section(read(DOCS / "operations.md"), "`fer_api_requests_total`", "\n")
    for rule in create_app(Settings()).url_map.iter_rules():
        assert f"`{rule.endpoint.removeprefix('fer.')}`" in metrics, f"docs/operations.md: {rule.endpoint}"


# -- modules, make, pages ----------------------------------------------------------------------------


def test_every_module_is_in_the_module_map() -> None:
    table = section(read(DOCS / "architecture.md"), "## Module map", "\n## ")
    for path in sorted([*ROOT.glob("api/*.py"), *ROOT.glob("worker/**/*.py")]):
        name = path.relative_to(ROOT).as_posix()
        assert f"| `{name}` |" in table, f"docs/architecture.md's module map lacks {name}"


def make(*args: str) -> str:
    return subprocess.run(["make", "--no-print-directory", "-s", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_make_help_is_the_default_and_lists_every_described_target() -> None:
    described = re.findall(r"^([a-zA-Z0-9_.-]+):[^#\n]*## (.+)$", read(ROOT / "Makefile"), re.M)
    assert len(described) >= 10 and described[0][0] == "help"
    shown = make("help")
    assert make() == shown  # bare `make` is `make help`
    lines = {match[1]: match[2] for match in re.finditer(r"^  (\S+) +(.+)$", shown, re.M)}
    for target, description in described:
        assert lines.get(target) == description.strip(), f"make help: {target}"
    assert "keeps" in dict(described)["clean"] and ".venv" in make("-n", "clean")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", read(path), flags=re.S)
    return {slug(match[1]) for match in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[page.relative_to(ROOT).as_posix() for page in PAGES])
def test_links_reach_their_file_and_heading(page: Path) -> None:
    text = re.sub(r"```.*?```", "", read(page), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: {target}: no such heading"


def test_the_readme_is_a_page() -> None:
    readme = read(ROOT / "README.md")
    assert len(readme.splitlines()) <= 250
    for needed in ("make demo", "make test", "docs/faces.png", "docs/page.png", "docker compose up"):
        assert needed in readme, needed
    assert len(list(DOCS.glob("*.md"))) >= 4
    for page in PAGES:  # an issue tracker nobody outside can follow
        assert not re.search(r"\bissues? \d+", read(page), re.I), f"{page.name} cites an issue number"
