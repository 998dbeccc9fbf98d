"""The trainer stays readable (issue 26): no function over 60 lines and no module over 400 lines in training/."""
from __future__ import annotations

import ast
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "siam_depth_core" / "training"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines from `def` to the last line of the body) of every function in `path`."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    found.append((name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), f"{path.name}:")
    return found


def test_no_training_function_over_60_lines() -> None:
    functions = [f for path in sorted(TRAINING.glob("*.py")) for f in _functions(path)]
    assert len(functions) > 50, "found too few functions: the check would be vacuous"
    too_long = [f"{name} ({lines} lines)" for name, lines in functions if lines > MAX_FUNCTION_LINES]
    assert not too_long, f"split these into named parts: {', '.join(too_long)}"


def test_no_training_module_over_400_lines() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in TRAINING.glob("*.py")}
    assert "train.py" in sizes and "trainer.py" in sizes
    too_long = [f"{name} ({lines} lines)" for name, lines in sizes.items() if lines > MAX_MODULE_LINES]
    assert not too_long, f"split these modules: {', '.join(too_long)}"
