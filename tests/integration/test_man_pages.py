"""The man pages dnsgate(1) and dnsgate.yaml(5) (man/, mdoc(7)): lint-clean
under `mandoc -T lint -W warning`, they render, dnsgate(1) documents every
subcommand `dnsgate --help` lists, dnsgate.yaml(5) every field of
docs/configuration.md's field table, and `make install` puts them where
`man -M` finds them (DESIGN.md §12, "Install")."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dnsgate_testlib import REPO, dnsgate_bin

MANDOC = shutil.which("mandoc")
MAN = shutil.which("man")
MMAN = shutil.which("mman")
PAGES = {"dnsgate.1": REPO / "man" / "dnsgate.1", "dnsgate.yaml.5": REPO / "man" / "dnsgate.yaml.5"}


def need_mandoc() -> str:
    assert MANDOC, "mandoc is missing: install it (scripts/install-deps.sh)"
    return MANDOC


def render(page: Path) -> str:
    """The page as a reader sees it: `mandoc -T utf8`, overstrikes removed."""
    r = subprocess.run([need_mandoc(), "-T", "utf8", str(page)], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stderr == "", f"mandoc -T utf8 {page}: rc {r.returncode}: {r.stderr}"
    text = re.sub(r".\x08", "", r.stdout)
    assert text.strip(), f"{page} renders empty"
    return text


def section(text: str, name: str) -> str:
    """One section of a rendered page: from its heading (at column 0) to the next."""
    m = re.search(rf"^{re.escape(name)}\n(.*?)(?=^\S)", text, re.M | re.S)
    assert m, f"no section {name} in the rendered page"
    return m.group(1)


def help_subcommands() -> list[str]:
    r = subprocess.run([dnsgate_bin(), "--help"], capture_output=True, text=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = lines.index("Subcommands:") + 1
    names = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        names.append(line.split()[0])
    assert names, f"no subcommands in dnsgate --help:\n{r.stdout}"
    return names


def config_fields() -> list[str]:
    """The first column of the table under "## Fields" in docs/configuration.md."""
    text = (REPO / "docs" / "configuration.md").read_text()
    body = text.split("\n## Fields\n", 1)[1].split("\n## ", 1)[0]
    fields = []
    for line in body.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if m:
            fields.append(m.group(1))
    assert len(fields) > 20, f"the field table of docs/configuration.md has only {fields}"
    return fields


@pytest.mark.parametrize("name", sorted(PAGES))
def test_lint_clean(name):
    r = subprocess.run([need_mandoc(), "-T", "lint", "-W", "warning", str(PAGES[name])], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stdout + r.stderr


def test_dnsgate_1_documents_every_subcommand():
    text = render(PAGES["dnsgate.1"])
    synopsis = section(text, "SYNOPSIS")
    commands = section(text, "COMMANDS")
    for name in help_subcommands():
        assert re.search(rf"^\s+dnsgate {re.escape(name)}\b", synopsis, re.M), \
            f"dnsgate {name} (from dnsgate --help) is not in the SYNOPSIS of dnsgate(1)"
        assert re.search(rf"^\s+{re.escape(name)}\b", commands, re.M), \
            f"dnsgate {name} (from dnsgate --help) has no entry under COMMANDS in dnsgate(1)"
    for heading in ("NAME", "DESCRIPTION", "SIGNALS", "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES",
                    "SEE ALSO"):
        section(text, heading)
    for variable in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "DNSGATE_SECCOMP_PROBE"):
        assert variable in section(text, "ENVIRONMENT"), f"{variable} is not under ENVIRONMENT"
    see_also = section(text, "SEE ALSO")
    assert "dnsgate.yaml(5)" in see_also and "systemd.socket(5)" in see_also


def test_dnsgate_yaml_5_documents_every_field():
    text = render(PAGES["dnsgate.yaml.5"])
    fields = section(text, "FIELDS")
    missing = []
    for field in config_fields():
        # A top-level field has an entry of its own under FIELDS (a line that
        # begins with it at the list's indent); a nested one is named.
        top = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not re.search(rf"^ {{5}}{re.escape(top)} \(", fields, re.M):
            missing.append(f"an entry for {top} (from {field})")
        leaf = re.split(r"[.\]]", field)[-1]
        if not re.search(rf"(?<!\w){re.escape(leaf)}\b", fields):
            missing.append(f"{leaf} (from {field})")
    assert not missing, f"dnsgate.yaml(5) lacks: {', '.join(missing)}"
    for heading in ("NAME", "DESCRIPTION", "EXAMPLES", "DIAGNOSTICS", "SEE ALSO"):
        section(text, heading)
    assert "dnsgate(1)" in section(text, "SEE ALSO")


def test_make_install_puts_the_pages_where_man_finds_them(tmp_path):
    """`make install DESTDIR=… PREFIX=/usr/local` (as test_socket_activation.py
    runs it: BUILD_DIR is the tested binary's folder) stages the pages under
    usr/local/share/man, where `man -M` looks for sections 1 and 5."""
    destdir = tmp_path / "stage"
    build_dir = Path(dnsgate_bin()).parent
    r = subprocess.run(["make", "-s", "-C", str(REPO), "install", f"DESTDIR={destdir}", "PREFIX=/usr/local",
                        f"BUILD_DIR={build_dir}"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    manroot = destdir / "usr" / "local" / "share" / "man"
    expected = {"dnsgate": (manroot / "man1" / "dnsgate.1", PAGES["dnsgate.1"]),
                "dnsgate.yaml": (manroot / "man5" / "dnsgate.yaml.5", PAGES["dnsgate.yaml.5"])}
    for installed, source in expected.values():
        assert installed.is_file(), f"make install did not write {installed}"
        assert filecmp.cmp(installed, source, shallow=False), f"{installed} differs from {source}"
        assert oct(installed.stat().st_mode & 0o777) == oct(0o644)
    # man-db's `man` where there is one, and always mandoc's own (`mman`,
    # from the mandoc package): both must find each page by its name.
    readers = [m for m in (MAN, MMAN) if m]
    assert MMAN, "mman is missing: install mandoc (scripts/install-deps.sh)"
    env = {k: v for k, v in os.environ.items() if k not in ("MANPATH", "MANSECT", "MANOPT")}
    for reader in readers:
        for name, (installed, _) in expected.items():
            r = subprocess.run([reader, "-M", str(manroot), "-w", name], capture_output=True, text=True,
                               timeout=30, stdin=subprocess.DEVNULL, env=env)
            assert r.returncode == 0 and r.stdout.split(), f"{reader} -M {manroot} -w {name}: {r.stderr}"
            assert Path(r.stdout.split()[0]) == installed, f"{reader} -M {manroot} -w {name}: {r.stdout}"
