"""Tests of the package layout: who owns which fact, which modules are leaves.

Read from the source with `ast` (nothing is imported), so a regression names the
file and the line.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_filterprune"
PATH_HELPERS = {
    "all_layers",
    "_all_layers",
    "children",
    "layer_by_path",
    "layers_by_path",
    "resolve_layer_names",
}


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path, node):
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def test_validation_is_a_leaf():
    path = PACKAGE / "_validation.py"
    imports = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else ["."]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        imports += [
            _where(path, node)
            for name in names
            if name == "." or name.split(".")[0] == "keras_filterprune"
        ]
    assert imports == [], "_validation must import nothing from the package"


def test_model_path_helpers_are_defined_only_in_paths():
    defined = [
        f"{_where(path, node)} {node.name}"
        for path in _modules()
        if path.name != "_paths.py" or path.parent != PACKAGE
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name in PATH_HELPERS
    ]
    assert defined == [], "model-path helpers belong to keras_filterprune/_paths.py"
    paths = {
        node.name
        for node in _tree(PACKAGE / "_paths.py").body
        if isinstance(node, ast.FunctionDef)
    }
    assert PATH_HELPERS - {"_all_layers"} <= paths


def _outside_handlers():
    return [p for p in _modules() if "handlers" not in p.relative_to(PACKAGE).parts]


@pytest.mark.parametrize("name", ["BatchNormalization"])
def test_only_handlers_test_layer_classes(name):
    """`isinstance(layer, keras.layers.<name>)` is a per-layer fact: the handler
    declares it (e.g. `statistics_weights`), the rest of the package asks."""
    found = [
        _where(path, node)
        for path in _outside_handlers()
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "isinstance"
        and len(node.args) == 2
        and name in ast.unparse(node.args[1])
    ]
    assert found == []


def test_statistics_are_not_recognised_by_name_outside_handlers():
    found = [
        _where(path, node)
        for path in _outside_handlers()
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("moving_")
    ]
    assert found == []


def test_no_module_imports_another_modules_private_names():
    """Modules talk through names without an underscore (a private module may be
    imported, its private names may not)."""
    found = []
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 0 and not (node.module or "").startswith(
                "keras_filterprune"
            ):
                continue
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not name.startswith("__"):
                    module = "." * node.level + (node.module or "")
                    if (
                        not (PACKAGE / f"{name}.py").exists()
                        and not (
                            PACKAGE
                            / (node.module or "")
                            .replace("keras_filterprune", "")
                            .strip(".")
                            .replace(".", "/")
                            / f"{name}.py"
                        ).exists()
                    ):
                        found.append(
                            f"{path.relative_to(PACKAGE)}:{node.lineno} {module}.{name}"
                        )
    assert not found, found
