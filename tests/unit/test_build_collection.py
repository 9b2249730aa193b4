"""scripts/build_collection.py: the rewrites on small inputs, what it refuses, and one real build of the collection
from this checkout (ansible-galaxy and antsibull-changelog run for real) checked member by member."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import yaml

from scripts import build_collection as bc

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = bc.Collection({"namespace": "cocos", "name": "libvirt", "version": "0.1.0"},
                           ["cocos_alpine", "cocos_libvirt"])
MODULES = {"libvirt_pool", "libvirt_volume", "libvirt_domain", "libvirt_domain_info"}
UTILS = "ansible_collections.cocos.libvirt.plugins.module_utils.cocos_libvirt"
ALPINE = "ansible_collections.cocos.libvirt.plugins.module_utils.cocos_alpine"


def test_imports_of_the_library_get_the_collection_path():
    source = (
        "from ansible.module_utils.basic import AnsibleModule\n"
        "from ansible.module_utils.cocos_libvirt.common import COMMON_ARGS  # noqa: E402\n"
        "from module_utils.cocos_libvirt import domain, units\n"
        "from library import libvirt_pool\n"
        "import libvirt\n"
        "import libvirt_test_driver\n"
        "from .common import LibvirtModuleError\n"
        "from module_utils.cocos_libvirtx import other\n"
        'DOC = """\nfrom module_utils.cocos_libvirt import not_code\n"""\n'
        "from ansible.module_utils.cocos_alpine.apkovl import OverlayManager\n")
    lines = bc.rewrite_imports(source, COLLECTION.python_imports()).splitlines()
    assert lines[0] == "from ansible.module_utils.basic import AnsibleModule"
    assert lines[1] == f"from {UTILS}.common import COMMON_ARGS  # noqa: E402"
    assert lines[2] == f"from {UTILS} import domain, units"
    assert lines[3] == "from ansible_collections.cocos.libvirt.plugins.modules import libvirt_pool"
    assert lines[4] == "import libvirt"
    assert lines[5] == ("import ansible_collections.cocos.libvirt.tests.unit.plugins.module_utils.cocos_libvirt"
                        ".libvirt_test_driver")
    assert lines[6:9] == ["from .common import LibvirtModuleError", "from module_utils.cocos_libvirtx import other",
                          'DOC = """']
    assert lines[9] == "from module_utils.cocos_libvirt import not_code"  # text, not an import
    assert lines[11] == f"from {ALPINE}.apkovl import OverlayManager"  # every module_utils package


def test_our_doc_fragments_are_qualified_and_others_left_alone():
    doc = ("extends_documentation_fragment:\n  - cocos_libvirt\n  - cocos_libvirt.attributes\n"
           "  - community.general.attributes\noptions:\n  x:\n    choices:\n      - cocos_libvirt\n")
    out = bc.qualify_doc_fragments(doc, ["cocos_libvirt"], "cocos.libvirt")
    assert out.splitlines()[1:4] == ["  - cocos.libvirt.cocos_libvirt", "  - cocos.libvirt.cocos_libvirt.attributes",
                                     "  - community.general.attributes"]
    assert out.splitlines()[-1] == "      - cocos_libvirt"


def test_module_links_are_qualified():
    text = "defined by M(libvirt_domain)'s options, see M(libvirt_domain_info) and M(ansible.builtin.copy)"
    assert bc.qualify_module_markup(text, MODULES, "cocos.libvirt") == (
        "defined by M(cocos.libvirt.libvirt_domain)'s options, see M(cocos.libvirt.libvirt_domain_info) and "
        "M(ansible.builtin.copy)")


def test_task_keys_become_fqcns_and_nothing_else_changes():
    tasks = ("- name: Pool\n  libvirt_pool:\n    name: p\n  register: libvirt_pool\n"
             "- name: Info\n  libvirt_domain_info: {name: d}\n"
             "- libvirt_volume:\n    pool: p\n"
             "- name: Vars\n  vars:\n    libvirt_pool_name: p\n"
             "- name: Done\n  cocos.libvirt.libvirt_domain:\n    name: d\n")
    out = bc.qualify_task_modules(tasks, MODULES, "cocos.libvirt")
    assert "  cocos.libvirt.libvirt_pool:\n" in out and "register: libvirt_pool\n" in out
    assert "  cocos.libvirt.libvirt_domain_info: {name: d}\n" in out
    assert "- cocos.libvirt.libvirt_volume:\n" in out
    assert "    libvirt_pool_name: p\n" in out
    assert "  cocos.libvirt.libvirt_domain:\n" in out and "cocos.libvirt.cocos.libvirt" not in out
    assert bc.unqualified_tasks(yaml.safe_load(out), MODULES) == []


def test_role_references_become_fqcns():
    playbook = ("- hosts: all\n  pre_tasks:\n    - ansible.builtin.include_role:\n        name: alpine_vm\n"
                "  roles:\n    - role: libvirt_host\n    - alpine_vm  # bare\n  vars:\n    role_name: alpine_vm\n"
                "    alpine_vm_name: x\n")
    out = bc.qualify_role_references(playbook, ["alpine_vm", "libvirt_host"], "cocos.libvirt")
    assert "        name: cocos.libvirt.alpine_vm\n" in out
    assert "    - role: cocos.libvirt.libvirt_host\n" in out and "    - cocos.libvirt.alpine_vm  # bare\n" in out
    assert "    role_name: alpine_vm\n" in out and "    alpine_vm_name: x\n" in out


def test_leftover_repository_paths_are_found():
    text = (f"from {UTILS}.common import x\nimport importlib\n"
            "mod = importlib.import_module('ansible.module_utils.cocos_libvirt.domain')\n"
            f"from {ALPINE} import apkovl\nNAME = 'module_utils.cocos_alpine.apkovl'\n")
    assert bc.leftover_references(text, COLLECTION) == [
        "line 3: mod = importlib.import_module('ansible.module_utils.cocos_libvirt.domain')",
        "line 5: NAME = 'module_utils.cocos_alpine.apkovl'"]


def test_every_module_utils_package_ships():
    assert bc.util_packages(str(ROOT)) == ["cocos_alpine", "cocos_libvirt"]


def test_unqualified_calls_are_found_anywhere_in_a_document():
    data = [{"block": [{"name": "x", "libvirt_pool": {"name": "p"}}], "rescue": [{"libvirt_domain": {}}]}]
    assert bc.unqualified_tasks(data, MODULES) == ["libvirt_pool", "libvirt_domain"]


def test_only_the_library_tests_ship():
    shipped = bc.library_unit_tests(str(ROOT))
    assert {"test_units.py", "test_pool.py", "test_volume.py", "test_network.py", "test_domain.py",
            "test_domain_main.py"} <= set(shipped)
    assert not [name for name in shipped if name.startswith(("test_manager", "test_agent", "test_guest"))]
    assert "test_build_collection.py" not in shipped and "test_module_docs.py" not in shipped


def fake_repository(root: Path, module_text: str, task_text: str = "---\n- ansible.builtin.debug:\n") -> None:
    for directory in ("library", "plugins/doc_fragments", "module_utils/cocos_libvirt", "roles/r/tasks",
                      "playbooks"):
        (root / directory).mkdir(parents=True)
    (root / "library" / "libvirt_pool.py").write_text(module_text, encoding="utf-8")
    (root / "plugins" / "doc_fragments" / "cocos_libvirt.py").write_text("X = 1\n", encoding="utf-8")
    (root / "module_utils" / "cocos_libvirt" / "__init__.py").write_text("", encoding="utf-8")
    (root / "roles" / "r" / "tasks" / "main.yml").write_text(task_text, encoding="utf-8")
    (root / "site.yml").write_text("---\n- hosts: all\n  roles:\n    - r\n", encoding="utf-8")


GOOD_MODULE = 'DOCUMENTATION = "x"\nEXAMPLES = """\n- libvirt_pool:\n    name: p\n"""\n'


def test_a_module_naming_the_library_in_a_string_stops_the_build(tmp_path):
    fake_repository(tmp_path / "repo", GOOD_MODULE + "NAME = 'ansible.module_utils.cocos_libvirt.pool'\n")
    with pytest.raises(bc.BuildError, match=r"library/libvirt_pool.py still refers to the repository layout"):
        bc.stage_modules(str(tmp_path / "repo"), str(tmp_path / "out"), COLLECTION, {"libvirt_pool"})


def test_a_task_the_rewrite_cannot_qualify_stops_the_build(tmp_path):
    fake_repository(tmp_path / "repo", GOOD_MODULE, "---\n- {name: t, libvirt_pool: {name: p}}\n")
    with pytest.raises(bc.BuildError, match=r"roles/r/tasks/main.yml calls libvirt_pool without the collection's"):
        bc.stage_yaml(str(tmp_path / "repo"), str(tmp_path / "out"), COLLECTION, {"libvirt_pool"}, ["r"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    output = tmp_path_factory.mktemp("build")
    tarball = bc.build(str(ROOT), str(output))
    with tarfile.open(tarball) as archive:
        members = {member.name: member for member in archive.getmembers()}
        texts = {name: archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                 for name, member in members.items() if member.isfile() and name.endswith((".py", ".yml", ".yaml"))}
    return Path(tarball), members, texts


def test_tarball_is_named_from_galaxy_yml(built):
    tarball, _members, texts = built
    galaxy = yaml.safe_load((ROOT / "collection" / "galaxy.yml").read_text(encoding="utf-8"))
    assert tarball.name == f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    assert yaml.safe_load(texts["meta/runtime.yml"])["requires_ansible"].startswith(">=")


def test_tarball_holds_the_content_in_collection_layout(built):
    _tarball, members, texts = built
    modules = sorted(path.name for path in (ROOT / "library").glob("*.py"))
    utils = sorted(str(path.relative_to(ROOT / "module_utils")) for path in (ROOT / "module_utils").glob("*/*.py"))
    shipped = [n.split("/")[-1] for n in members if n.startswith("plugins/modules/") and n.endswith(".py")]
    assert sorted(shipped) == modules
    assert "cocos_alpine/apkovl.py" in utils and "cocos_libvirt/domain.py" in utils
    for name in utils:  # copied unchanged: each package imports itself relatively
        assert texts[f"plugins/module_utils/{name}"] == (ROOT / "module_utils" / name).read_text(encoding="utf-8")
    for name in ("CHANGELOG.md", "changelogs/changelog.yaml", "README.md", "docs/ARCHITECTURE.md",
                 "playbooks/site.yml", "playbooks/domain.yml", "roles/alpine_vm/meta/argument_specs.yml",
                 "roles/libvirt_host/tasks/main.yml", "tests/config.yml", "tests/unit/conftest.py",
                 "LICENSES/GPL-3.0-or-later.txt", "plugins/doc_fragments/cocos_libvirt.py"):
        assert name in members, name
    assert not [n for n in members if "__pycache__" in n or n.startswith("tests/output") or n.endswith(".pyc")]


def test_no_repository_paths_and_no_short_names_remain(built):
    _tarball, _members, texts = built
    modules = {path.stem for path in (ROOT / "library").glob("*.py")}
    for name, text in texts.items():
        if name.endswith(".py"):
            assert bc.leftover_references(text, COLLECTION) == [], name
        elif name.startswith(("roles/", "playbooks/")):
            assert bc.unqualified_tasks(yaml.safe_load(text), modules) == [], name
    assert "cocos.libvirt.libvirt_domain:" in texts["roles/alpine_vm/tasks/present.yml"]
    assert "- cocos.libvirt.cocos_libvirt.attributes" in texts["plugins/modules/libvirt_pool.py"]
    assert f"from {ALPINE}.apkovl import" in texts["plugins/modules/alpine_apkovl.py"]
    assert "cocos.libvirt.alpine_apkovl:" in texts["roles/alpine_vm/tasks/apkovl.yml"]


def test_changelog_releases_the_fragments_with_every_module(built):
    _tarball, members, texts = built
    galaxy = yaml.safe_load((ROOT / "collection" / "galaxy.yml").read_text(encoding="utf-8"))
    release = yaml.safe_load(texts["changelogs/changelog.yaml"])["releases"][str(galaxy["version"])]
    assert release["changes"]["release_summary"]
    assert sorted(module["name"] for module in release["modules"]) == sorted(
        path.stem for path in (ROOT / "library").glob("*.py"))
    assert not [n for n in members if n.startswith("changelogs/fragments/") and n != "changelogs/fragments"]


def test_shipped_tests_import_only_the_collection(built):
    _tarball, members, texts = built
    shipped = {os.path.basename(n) for n in members if n.startswith(bc.UNIT_DEST + "/test_")}
    assert shipped == set(bc.library_unit_tests(str(ROOT)))
    for name in shipped:
        text = texts[f"{bc.UNIT_DEST}/{name}"]
        assert "from ansible_collections.cocos.libvirt." in text
        assert bc.leftover_references(text, COLLECTION) == []
