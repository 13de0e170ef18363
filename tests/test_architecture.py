"""The package's shape: imports run one way (docs/architecture.md), plugin load stays light, saved runs keep loading,
one compatibility layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Set

import numpy as np
import pytest
import torch
import yaml

PACKAGE = Path(__file__).resolve().parents[1] / "jacobinerf_ns"

LAYERS = [  # lowest first; a module may import modules of its own layer or below, never above (docs/architecture.md)
    {
        "errors",
        "files",
        "cache",
        "jacobians",
        "metrics",
        "visualization",
        "sample_scene",
        "deferred",
        "surface_accuracy",
        "surface_depth",
    },
    {
        "compat",
        "trainer",
        "labels",
        "clicks",
        "scene",
        "probe",
        "view_cache",
        "field",
        "shaping",
        "pointcloud",
        "depth_consistency",
    },
    {"surrogates", "dataparsers", "segmentation"},
    {"model", "model_config"},
    {"propagation"},
    {"evaluation", "label_export", "datamanager", "viewer"},
    {"pipeline", "pipeline_config"},
    {"config"},
    {"commands", "runs", "demo"},
]
PLUGIN_ENTRY_POINTS = ("jacobinerf_ns.config", "jacobinerf_ns.dataparsers.registry")
"""What nerfstudio imports at start-up of every ``ns-*`` command (pyproject.toml's entry points)."""
NERFSTUDIO_PRIVATE = {"_dataparser_outputs", "_start_step", "_trigger_rerender", "_get_fname"}
"""nerfstudio's private attributes the package reads, each behind a named function of ``compat.py``."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    top = module.split(".")[1]
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def imported_modules(path: Path, modules: Set[str]) -> Set[str]:
    """Package modules imported anywhere in ``path``: functions and ``if TYPE_CHECKING:`` blocks included (an import for
    type hints names a dependency too)."""
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in modules and name != "jacobinerf_ns"}


def import_graph() -> Dict[str, Set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {module: imported_modules(path, set(paths)) - {module} for module, path in paths.items()}


def test_imports_run_one_way():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        if module != "jacobinerf_ns"
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = import_graph()
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " → ".join(path[path.index(target) :] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_layers_table_is_the_one_in_docs_architecture():
    rows = (PACKAGE.parent / "docs" / "architecture.md").read_text().split("## Layers")[1].split("\n## ")[0]
    table = [line.split("|")[2] for line in rows.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [{name.strip("/") for name in row.split("`")[1::2]} for row in table] == LAYERS


def test_loading_the_plugin_imports_no_model_and_no_pipeline():
    """nerfstudio imports the entry points for every ``ns-*`` command: the model, the pipeline and what they use are
    imported when a pipeline is built (``config.py`` names them through ``deferred.Deferred``)."""
    heavy = ["jacobinerf_ns.model", "jacobinerf_ns.pipeline", "jacobinerf_ns.field", "jacobinerf_ns.viewer"]
    script = "; ".join(
        [
            *(f"import {module}" for module in PLUGIN_ENTRY_POINTS),
            "import sys",
            f"print([m for m in {heavy} if m in sys.modules])",
        ]
    )
    loaded = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "[]", loaded


def test_the_method_sets_up_the_model_and_pipeline_it_names():
    from jacobinerf_ns.config import jacobinerf
    from jacobinerf_ns.deferred import Deferred

    pipeline = jacobinerf.config.pipeline
    assert pipeline._target == Deferred("jacobinerf_ns.pipeline", "JacobiNerfPipeline")
    assert pipeline.model._target == Deferred("jacobinerf_ns.model", "JacobiNerfModel")
    for target in (pipeline._target, pipeline.model._target):
        module = __import__(target.module, fromlist=[target.name])
        assert isinstance(getattr(module, target.name), type)


def test_nerfstudio_private_attributes_are_read_only_in_compat():
    readers = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} reads {node.attr}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "compat.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in NERFSTUDIO_PRIVATE
    ]
    assert not readers, "\n".join(readers)


def test_the_package_does_not_use_unittest_mock():
    users = [str(path) for path in PACKAGE.rglob("*.py") if "unittest" in path.read_text()]
    assert not users


def test_a_config_written_by_version_0_1_0_loads_and_builds(sample_scene):
    """``config.yml`` names classes by module path: moved classes keep an importable alias."""
    from jacobinerf_ns.pipeline import JacobiNerfPipeline
    from jacobinerf_ns.propagation.protocol import PropagationProtocol

    config = yaml.load((Path(__file__).parent / "fixtures" / "config_0.1.0.yml").read_text(), Loader=yaml.Loader)
    assert isinstance(config.pipeline.propagation, PropagationProtocol)
    config.pipeline.datamanager.data = sample_scene
    config.pipeline.datamanager.dataparser.data = sample_scene
    pipeline = config.pipeline.setup(device="cpu", test_mode="test")
    assert isinstance(pipeline, JacobiNerfPipeline)
    assert pipeline.model.config.shaping_start_step == 1 and pipeline.config.propagation.method == "jacobian"


def test_nerfacto_parts_are_swapped_for_one_call_and_checked():
    import nerfstudio.models.nerfacto as nerfacto
    from nerfstudio.fields.nerfacto_field import NerfactoField

    from jacobinerf_ns import compat
    from jacobinerf_ns.field import JacobiNerfField
    from tests.helpers import build_tiny_model

    model = build_tiny_model()
    assert isinstance(model.field, JacobiNerfField) and isinstance(model.lpips, compat.OfflineLPIPS)
    assert nerfacto.NerfactoField is NerfactoField, "the swap ends with populate_modules"
    with pytest.raises(KeyError), compat.replaced_attributes(nerfacto, NerfactoField=None):
        raise KeyError("restored after an exception too")
    assert nerfacto.NerfactoField is NerfactoField
    unswapped = SimpleNamespace(field=torch.nn.Linear(1, 1), lpips=compat.OfflineLPIPS())
    with pytest.raises(RuntimeError, match=r"field is a Linear.*nerfstudio 1\.1\.5"):
        compat.check_nerfacto_parts(unswapped, JacobiNerfField)


def test_checkpoints_with_numpy_learning_rates_load_with_weights_only(tmp_path):
    from jacobinerf_ns import compat

    torch.save({"scheduler": {"base_lrs": [np.float64(0.01)]}}, tmp_path / "state.ckpt")
    compat.allow_numpy_scalars()
    state = torch.load(tmp_path / "state.ckpt", weights_only=True)
    assert float(state["scheduler"]["base_lrs"][0]) == pytest.approx(0.01)
