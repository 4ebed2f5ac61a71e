"""Safe parsing, asserted over the source tree and by behaviour.

* YAML is only loaded with safe constructors (SafeLoader, BaseLoader or a subclass
  of SafeLoader); never ``yaml.load`` with another loader, ``unsafe_load``,
  ``full_load`` or ``yaml.Loader``.
* XML is parsed only through defusedxml (the standard library parsers may build
  XML but never parse it), and a billion-laughs SBOM is refused.
* Dossier file references cannot leave the dossier folder (``..``, absolute paths,
  symlinks) unless the dossier says ``allow_absolute_paths: true``.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from metercert.dossier import sample_dossier
from metercert.dossier.load import load_dossier
from metercert.dossier.sbom import SbomError, read_sbom
from metercert.errors import MetercertError

SRC = Path(__file__).resolve().parents[2] / "src" / "metercert"
SOURCES = sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
UNSAFE_CALLS = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
UNSAFE_NAMES = {"Loader", "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}
XML_PARSE_CALLS = {"parse", "fromstring", "iterparse", "XMLParser", "parseString", "XML",
                   "fromstringlist", "make_parser"}
STDLIB_XML = ("xml.etree", "xml.dom", "xml.sax", "xml.parsers", "lxml")


def _safe_local_loaders(tree: ast.AST) -> set[str]:
    """Classes defined in the module that derive from a safe loader."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name in SAFE_LOADERS:
                    out.add(node.name)
    return out


def yaml_problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    safe = SAFE_LOADERS | _safe_local_loaders(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "yaml" and (node.attr in UNSAFE_CALLS or node.attr in UNSAFE_NAMES):
            problems.append(f"{path.name}:{node.lineno}: yaml.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("load", "load_all", "compose", "compose_all") \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "yaml":
            loader = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "Loader"), None)
            name = loader.attr if isinstance(loader, ast.Attribute) else getattr(loader, "id", None)
            if name not in safe:
                problems.append(f"{path.name}:{node.lineno}: yaml.{node.func.attr} with {name}")
    return problems


def xml_problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(STDLIB_XML):
                    aliases.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(STDLIB_XML):
            for a in node.names:
                if a.name in XML_PARSE_CALLS:
                    return [f"{path.name}:{node.lineno}: imports {a.name} from {node.module}"]
                aliases.add(a.asname or a.name)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in XML_PARSE_CALLS:
            root = node.func.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                problems.append(f"{path.name}:{node.lineno}: {ast.unparse(node.func)}")
    return problems


def test_sources_were_found() -> None:
    assert len(SOURCES) > 50


def test_yaml_only_with_safe_loaders() -> None:
    problems = [p for f in SOURCES for p in yaml_problems(f)]
    assert not problems, "\n".join(problems)


def test_xml_only_parsed_with_defusedxml() -> None:
    problems = [p for f in SOURCES for p in xml_problems(f)]
    assert not problems, "\n".join(problems)


def test_the_source_scans_can_fail(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import yaml\nimport xml.etree.ElementTree as ET\nfrom xml.dom.minidom import parseString\n"
        "class L(yaml.SafeLoader): pass\n"
        "a = yaml.load(t, Loader=yaml.Loader)\nb = yaml.load(t, L)\nc = yaml.full_load(t)\n"
        "d = yaml.load(t, yaml.BaseLoader)\ne = ET.fromstring(t)\n")
    assert len(yaml_problems(probe)) == 3  # yaml.Loader attr + load with Loader + full_load
    assert xml_problems(probe)


def test_billion_laughs_sbom_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bom.xml"
    bomb.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
        '<bom xmlns="http://cyclonedx.org/schema/bom/1.5"><components>&lol3;</components></bom>\n')
    with pytest.raises(SbomError):
        read_sbom(bomb)


def test_external_entity_sbom_is_refused(tmp_path: Path) -> None:
    xxe = tmp_path / "bom.xml"
    xxe.write_text('<?xml version="1.0"?>\n<!DOCTYPE bom [<!ENTITY x SYSTEM "file:///etc/hostname">]>\n'
                   '<bom xmlns="http://cyclonedx.org/schema/bom/1.5"><serialNumber>&x;</serialNumber></bom>\n')
    with pytest.raises(SbomError):
        read_sbom(xxe)


# -- dossier file references ---------------------------------------------------------------

@pytest.fixture()
def dossier_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "vendor" / "dossier"
    shutil.copytree(sample_dossier("reference-meter"), folder)
    (tmp_path / "vendor" / "outside.cdx.json").write_text(
        (folder / "sbom.cdx.json").read_text())
    return folder


def _with(folder: Path, sbom_ref: str, allow: bool = False) -> Path:
    path = folder / "dossier.yaml"
    text = path.read_text().replace("sbom: sbom.cdx.json", f"sbom: {json.dumps(sbom_ref)}")
    text = text.replace("allow_absolute_paths: false", f"allow_absolute_paths: {str(allow).lower()}")
    path.write_text(text)
    return path


def test_sample_dossier_loads(dossier_dir: Path) -> None:
    assert load_dossier(dossier_dir).sbom is not None


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "nested dotdot"])
def test_references_cannot_escape(dossier_dir: Path, kind: str) -> None:
    outside = dossier_dir.parent / "outside.cdx.json"
    if kind == "symlink":
        (dossier_dir / "link.cdx.json").symlink_to(outside)
        ref = "link.cdx.json"
    else:
        ref = {"dotdot": "../outside.cdx.json", "absolute": str(outside),
               "nested dotdot": "certs/../../outside.cdx.json"}[kind]
    _with(dossier_dir, ref)
    with pytest.raises(MetercertError, match="leaves the dossier folder"):
        load_dossier(dossier_dir)


def test_escape_allowed_only_when_the_dossier_says_so(dossier_dir: Path) -> None:
    outside = dossier_dir.parent / "outside.cdx.json"
    _with(dossier_dir, str(outside), allow=True)
    dossier = load_dossier(dossier_dir)
    assert dossier.sbom is not None
