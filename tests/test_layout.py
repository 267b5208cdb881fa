"""The shape of the code: scripts import library modules only, one evaluation module, no sys.path edits,
one CLI vocabulary with every default in --help, and a model card generated from the weights manifest."""
import argparse
import ast
import re
from pathlib import Path

from conftest import REPO
from test_readme import load_script

import cli
import hub

SCRIPTS = ["preprocess.py", "train.py", "test.py", "visualize_filters.py",
           *sorted(str(p.relative_to(REPO)) for p in (REPO / "benchmarks").glob("*.py")),
           *sorted(str(p.relative_to(REPO)) for p in (REPO / "weights").glob("*.py"))]
SCRIPT_MODULES = {"preprocess", "train", "test", "visualize_filters"}


def source_files() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if not {"tests", ".venv", ".git"} & set(p.relative_to(REPO).parts)]


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_scripts_import_library_modules_only_and_nothing_edits_sys_path():
    for path in source_files():
        modules = imported(path)
        assert not modules & SCRIPT_MODULES, (path, modules & SCRIPT_MODULES)
        assert not {m for m in modules if m.startswith(("benchmarks", "weights"))}, path
        assert "sys.path" not in path.read_text(), path
    for script in ("train.py", "test.py", "benchmarks/eval_benchmarks.py", "weights/publish.py"):
        assert "evaluate" in imported(REPO / script), script  # the one scoring code


def options(script: str) -> dict[str, argparse.Action]:
    parser = load_script(script).build_parser()
    return {flag: action for action in parser._actions for flag in action.option_strings if flag not in ("-h", "--help")}


def test_every_flag_has_help_and_shows_its_default():
    for script in SCRIPTS:
        parser = load_script(script).build_parser()
        text = " ".join(parser.format_help().split())
        for flag, action in options(script).items():
            assert action.help, (script, flag)
            if not (action.default is None or action.default is False or action.default == []):
                assert "(default: " in action.help or f"(default: {cli.shown(action.default)})" in text, (script, flag)
                assert "PosixPath" not in text and "(default: [" not in text, script  # shown as typed
            assert not re.search(r"\d(\.\d+)?x faster|MB\b|GB\b", action.help), (script, flag)  # no measurements


def test_one_flag_name_per_concept():
    train, test = options("train.py"), options("test.py")
    shared = set(train) & set(test)
    assert shared <= {"--scale", "--device", "--output-dir", "--padding"}, shared  # same name, same meaning
    for script in SCRIPTS:
        for flag in options(script):
            assert flag not in ("--outputs-dir", "--outputs-root", "--num-workers", "--scales", "--weights"), (script, flag)
            if re.fullmatch(r"--output.*", flag):
                assert flag in ("--output-dir", "--output"), (script, flag)  # --output is a file, --output-dir a folder
    for script in SCRIPTS:
        for flag, action in options(script).items():
            if flag == "--output-dir":
                assert action.type is Path, script


def test_model_card_is_generated_from_the_manifest():
    manifest = hub.read_manifest()
    assert sorted(manifest) == sorted(p.name for p in (REPO / "weights").glob("*.pth"))
    for name, entry in manifest.items():
        assert hub.file_sha256(REPO / "weights" / name) == entry["sha256"], name
    card = (REPO / "weights" / "README.md").read_text()
    assert card.split(hub.CARD_TABLE)[1].strip() == hub.card_table(manifest)
