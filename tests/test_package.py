"""The pack loads as ComfyUI loads it, the core library stays free of ComfyUI, and the deps stay clean."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMFY_MODULES = ("comfy", "folder_paths", "server", "execution", "nodes")
FORBIDDEN_DEPENDENCIES = {"torchvision", "torchaudio"}


def test_root_init_imports_outside_comfyui():
    """ComfyUI imports a custom node folder as a package from its __init__.py; so do we here."""
    name = "musedance_pack_under_test"
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
        assert isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict)
        assert set(module.NODE_DISPLAY_NAME_MAPPINGS) <= set(module.NODE_CLASS_MAPPINGS)
        assert set(module.__all__) >= {"NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"}
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_loading_the_pack_does_not_load_the_model_libraries():
    """ComfyUI imports every pack at start-up; diffusers and transformers load only when a node runs."""
    script = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("pack", {str(ROOT / "__init__.py")!r}, submodule_search_locations=[{str(ROOT)!r}])
module = importlib.util.module_from_spec(spec)
sys.modules["pack"] = module
spec.loader.exec_module(module)
heavy = [m for m in ("diffusers", "transformers", "librosa", "av") if m in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_core_library_never_imports_comfyui():
    """Import every musedance_core module in a fresh interpreter, recording any ComfyUI import attempt."""
    script = f"""
import importlib, pkgutil, sys
attempts = []
class Recorder:
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in {COMFY_MODULES!r}:
            attempts.append(fullname)
        return None
sys.meta_path.insert(0, Recorder())
import musedance_core
names = [m.name for m in pkgutil.walk_packages(musedance_core.__path__, "musedance_core.")]
for name in names:
    importlib.import_module(name)
loaded = [m for m in sys.modules if m.split(".")[0] in {COMFY_MODULES!r}]
assert "musedance_core.video" in names and "musedance_core.sampling.pipeline" in names, names
assert not attempts and not loaded, (attempts, loaded)
print(len(names), "modules")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


# Who may import whom, by package (first match wins). The generation library is musedance_core without its
# evaluation subpackage; nodes/ is the only place that knows ComfyUI.
GENERATION = "musedance_core"
FORBIDDEN_IMPORTS = {
    "musedance_core.evaluation": ("musedance_demo", "trainer", "nodes", *COMFY_MODULES, "comfy_api"),
    GENERATION: ("musedance_core.evaluation", "musedance_demo", "trainer", "nodes", *COMFY_MODULES, "comfy_api"),
    "musedance_demo": ("trainer", "nodes", *COMFY_MODULES, "comfy_api"),
    "trainer": ("musedance_demo", "nodes", *COMFY_MODULES, "comfy_api"),
}


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module `path` imports (at any depth, relative ones made absolute), with its line."""
    import ast

    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_imports_go_only_the_allowed_directions():
    """The generation library never imports evaluation, the main job, the trainer or ComfyUI; evaluation, the
    main job and the trainer never import the nodes or ComfyUI (and not each other's entry points)."""
    checked, wrong = 0, []
    for folder in ("musedance_core", "musedance_demo", "trainer"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = module_name(path)
            rules = next(banned for owner, banned in FORBIDDEN_IMPORTS.items()
                         if module == owner or module.startswith(owner + "."))
            for line, imported in imports_of(path, module):
                if any(imported == b or imported.startswith(b + ".") for b in rules):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
            checked += 1
    assert checked > 40 and not wrong, "\n".join(wrong)


def test_the_import_rule_sees_relative_and_function_level_imports(tmp_path):
    source = "def f():\n    from ..evaluation import metrics\n    import trainer.train\n"
    path = tmp_path / "x.py"
    path.write_text(source)
    found = {name for _, name in imports_of(path, "musedance_core.sampling.x")}
    assert {"musedance_core.evaluation", "musedance_core.evaluation.metrics", "trainer.train"} <= found


def requirement_name(line: str) -> str:
    return re.split(r"[\s<>=!~;\[]", line.strip(), maxsplit=1)[0].lower()


def test_dependencies_have_no_torchvision_torchaudio_and_torch_is_unpinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    assert not FORBIDDEN_DEPENDENCIES & {requirement_name(d) for d in deps}
    assert "torch" in project["dependencies"]  # bare name: the user's ComfyUI brings its own torch

    lines = [l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    names = {requirement_name(l) for l in lines}
    assert not FORBIDDEN_DEPENDENCIES & names
    assert all(l.strip() == "torch" for l in lines if requirement_name(l) == "torch")
    assert {requirement_name(d) for d in project["dependencies"]} - {"torch"} <= names


def test_pip_installs_only_the_core_library_and_the_main_job():
    """Installing `nodes` as a top-level package would shadow ComfyUI's own `nodes` module."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["musedance_core*", "musedance_demo*"]


# The lowest versions pyproject allows of the libraries whose APIs the code imports by path.
FLOOR_PACKAGES = ("diffusers", "transformers", "accelerate")
FLOORS_DIR = ROOT / ".floors"  # git-ignored; made once, reused while the floors stay the same


def dependency_floors() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    pins = []
    for name in FLOOR_PACKAGES:
        (spec,) = [d for d in deps if requirement_name(d) == name]
        match = re.fullmatch(rf"{name}>=([0-9.]+)", spec.replace(" ", ""))
        assert match, f"{spec!r}: give {name} a floor (>=) so that it can be checked here"
        pins.append(f"{name}=={match.group(1)}")
    return pins


def test_every_module_imports_and_samples_against_the_dependency_floors():
    """pyproject's floors are true: with exactly those versions of diffusers, transformers and accelerate,
    every module of the core, the main job, the trainer and the nodes imports and a tiny model samples."""
    import os

    pins = dependency_floors()
    target = FLOORS_DIR / "-".join(pins)
    if not (target / ".complete").is_file():
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), *pins],
                                capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            if os.environ.get("CI"):
                raise AssertionError(f"could not install the floors {pins}:\n{result.stderr[-3000:]}")
            import pytest

            pytest.skip(f"could not install {pins} (no package index?): {result.stderr.strip()[-300:]}")
        (target / ".complete").touch()
    script = f"""
import importlib, importlib.util, pkgutil, sys
import diffusers, transformers, accelerate
from packaging.version import Version
got = [diffusers.__version__, transformers.__version__, accelerate.__version__]
assert [Version(v) for v in got] == [Version(v) for v in {[p.split("==")[1] for p in pins]!r}], got
import musedance_core, musedance_demo, trainer
names = [m.name for pkg in (musedance_core, musedance_demo, trainer)
         for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
spec = importlib.util.spec_from_file_location("pack", {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["pack"] = pack
spec.loader.exec_module(pack)
for module in ("model", "music", "mask", "generate", "video"):
    importlib.import_module("pack.nodes." + module)
import torch
from musedance_core import MuseDanceConfig, MuseDancePipeline
config = MuseDanceConfig.tiny()
pipe = MuseDancePipeline.from_config(config)
video = pipe(reference_image=torch.rand(32, 32, 3), text_embeds=torch.zeros(1, 77, config.unet.cross_attention_dim),
             music_tokens=torch.zeros(10, 4, config.unet.music_dim), beats=torch.zeros(10), num_inference_steps=2,
             guidance_scale=2.0, beat_guidance_scale=3.0)
assert video.shape == (10, 32, 32, 3)
print(len(names), "modules")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]), HF_HOME=str(target / "hf_home"))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_comfy_registry_metadata_is_complete_and_the_archive_holds_the_pack_only():
    """What the Comfy Registry reads from pyproject.toml, and the file list `comfy node publish` would archive
    (git-tracked files minus .comfyignore): every runtime file, no tests, benchmarks or CI."""
    import fnmatch

    from packaging.specifiers import SpecifierSet

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, comfy = data["project"], data["tool"]["comfy"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*", project["name"]) and len(project["name"]) < 100
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]) and project["description"] and project["license"]
    repository = project["urls"]["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository)
    assert comfy["PublisherId"] and comfy["DisplayName"]
    raw = repository.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert comfy["Icon"].startswith(raw) and (ROOT / comfy["Icon"][len(raw):]).is_file()  # a committed picture
    assert SpecifierSet(comfy["requires-comfyui"]).contains("0.3.75")

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    ignored = [l.strip() for l in (ROOT / ".comfyignore").read_text().splitlines() if l.strip() and not l.startswith("#")]

    def ignore(path: str) -> bool:
        return any(path.startswith(p) if p.endswith("/") else fnmatch.fnmatch(path, p) for p in ignored)

    archive = [p for p in tracked if not ignore(p)]
    assert not [p for p in archive if p.startswith(("tests/", "benchmarks/", ".ci/"))]
    for needed in ("__init__.py", "nodes/generate.py", "musedance_core/sampling/pipeline.py", "web/musedance.js",
                   "models/musedance/musedance_default.safetensors", "workflows/musedance_basic.json",
                   "workflows/musedance_basic.jpg", "workflows/api/musedance_basic.api.json",
                   "requirements.txt", "pyproject.toml", "LICENSE", "README.md", comfy["Icon"][len(raw):]):
        assert needed in archive, needed
