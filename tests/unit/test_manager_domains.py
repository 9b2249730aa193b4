"""XML path resolution and parsing: inside CC_MANAGER_XML_DIR only, bounded, no DTDs; names by the policy."""
from __future__ import annotations

import os

import pytest

from manager_api.config import Config
from manager_api.domain_view import forwarded_ports
from manager_api.domains import RequestError, load_definitions, read_xml, resolve_xml_path

POOL = "<pool type='dir'><name>p1</name><target><path>{root}/img</path></target></pool>"
VOL = "<volume><name>v1</name><capacity>1</capacity></volume>"
DOM = "<domain type='qemu'><name>d1</name></domain>"


def config_for(xml_dir) -> Config:
    """test:///default (no host pools) and the test's own directory as the storage root."""
    return Config(xml_dir=str(xml_dir), libvirt_uri="test:///default", storage_roots=(str(xml_dir.parent),),
                  state_dir=str(xml_dir.parent / "state"))


@pytest.fixture
def xml_dir(tmp_path):
    base = tmp_path / "xml"
    (base / "sub").mkdir(parents=True)
    (base / "pool.xml").write_text(POOL.format(root=tmp_path))
    (base / "vol.xml").write_text(VOL)
    (base / "dom.xml").write_text(DOM)
    (base / "sub" / "dom.xml").write_text(DOM)
    (tmp_path / "outside.xml").write_text(DOM)
    return base


def test_empty_field_means_the_default_file(xml_dir):
    assert resolve_xml_path(str(xml_dir), "", "pool") == (xml_dir / "pool.xml").resolve()


def test_relative_and_absolute_inside_are_accepted(xml_dir):
    assert resolve_xml_path(str(xml_dir), "sub/dom.xml", "domain") == (xml_dir / "sub" / "dom.xml").resolve()
    assert resolve_xml_path(str(xml_dir), str(xml_dir / "dom.xml"), "domain") == (xml_dir / "dom.xml").resolve()


@pytest.mark.parametrize("given", ["../outside.xml", "sub/../../outside.xml", "sub/../dom.xml", "/etc/passwd"])
def test_escapes_are_refused(xml_dir, given):
    with pytest.raises(RequestError) as err:
        resolve_xml_path(str(xml_dir), given, "domain")
    assert err.value.field == "domain" and err.value.status == 400


def test_symlinks_leading_out_are_refused_and_inside_ones_allowed(xml_dir):
    os.symlink(xml_dir.parent / "outside.xml", xml_dir / "link-out.xml")
    os.symlink(xml_dir / "dom.xml", xml_dir / "link-in.xml")
    os.symlink(xml_dir.parent, xml_dir / "dirlink")
    with pytest.raises(RequestError, match="outside"):
        resolve_xml_path(str(xml_dir), "link-out.xml", "domain")
    with pytest.raises(RequestError, match="outside"):
        resolve_xml_path(str(xml_dir), "dirlink/outside.xml", "domain")
    assert resolve_xml_path(str(xml_dir), "link-in.xml", "domain") == (xml_dir / "dom.xml").resolve()


def test_missing_file_is_404(xml_dir):
    with pytest.raises(RequestError) as err:
        resolve_xml_path(str(xml_dir), "nope.xml", "volume")
    assert err.value.status == 404 and err.value.field == "volume"


@pytest.mark.parametrize("text, fragment", [
    ("<domain><name>x</name>", "malformed"),
    ('<!DOCTYPE d [<!ENTITY a "b">]><domain><name>&a;</name></domain>', "DOCTYPE"),
    ("<domain><name>&undeclared;</name></domain>", "malformed"),
    ("<pool><name>x</name></pool>", "expected a <domain>"),
])
def test_bad_definitions_are_refused(tmp_path, text, fragment):
    path = tmp_path / "d.xml"
    path.write_text(text)
    with pytest.raises(RequestError, match=fragment):
        read_xml(path, "domain", 4096)


def test_size_limit(tmp_path):
    path = tmp_path / "d.xml"
    path.write_text("<domain><name>x</name>" + " " * 5000 + "</domain>")
    with pytest.raises(RequestError, match="larger than 4096"):
        read_xml(path, "domain", 4096)


def test_definitions_carry_the_names(xml_dir):
    defs = load_definitions(config_for(xml_dir), "", "", "sub/dom.xml")
    assert (defs.pool_name, defs.volume_name, defs.domain_name) == ("p1", "v1", "d1")
    assert defs.extravars("test:///default")["domain_xml"] == DOM


@pytest.mark.parametrize("name", [
    "{{ lookup('pipe', 'id') }}", "&#123;&#123; x &#125;&#125;", "&#x7b;% x %&#x7d;", "<![CDATA[{# x #}]]>",
    "a&amp;b", "", "a/b", ".hidden", "x" * 101,
])
def test_names_outside_the_rule_are_refused(xml_dir, name):
    # The text goes into the XML as written: references and CDATA are decoded by the parser before the check.
    (xml_dir / "dom.xml").write_text(f"<domain type='qemu'><name>{name}</name></domain>")
    with pytest.raises(RequestError, match="names are letters") as err:
        load_definitions(config_for(xml_dir), "", "", "")
    assert err.value.field == "domain" and err.value.status == 400


def test_forwarded_ports_from_qemu_commandline():
    xml = """<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>d</name><qemu:commandline>
      <qemu:arg value='-netdev'/><qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:7020-:7002,hostfwd=udp::53-:5353'/>
      </qemu:commandline></domain>"""
    assert forwarded_ports(xml) == [
        {"host_address": "127.0.0.1", "host_port": 7020, "guest_port": 7002, "protocol": "tcp"},
        {"host_address": "0.0.0.0", "host_port": 53, "guest_port": 5353, "protocol": "udp"}]


def test_forward_without_protocol_is_tcp():
    xml = """<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>d</name><qemu:commandline>
      <qemu:arg value='-netdev'/><qemu:arg value='user,id=n0,hostfwd=:127.0.0.1:7021-:7002'/>
      </qemu:commandline></domain>"""
    assert forwarded_ports(xml) == [{"host_address": "127.0.0.1", "host_port": 7021, "guest_port": 7002,
                                     "protocol": "tcp"}]
