"""libvirt's own parser as the renderer of desired network, pool and volume definitions (render.py)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from module_utils.cocos_libvirt import render
from module_utils.cocos_libvirt.common import LibvirtModuleError

DNSMASQ = "http://libvirt.org/schemas/network/dnsmasq/1.0"


def test_network_rewrites_are_libvirts_own():
    desired = ET.fromstring(f"""<network xmlns:dnsmasq='{DNSMASQ}'><name>n</name><forward mode='nat'/>
      <mac address='52:54:00:AB:CD:EF'/><ip family='ipv6' address='fd00:0:0:0::1' prefix='64'/>
      <dnsmasq:options><dnsmasq:option value='log-queries'/></dnsmasq:options></network>""")
    out = render.network(desired, "network 'n'")
    assert out.find("mac").get("address") == "52:54:00:ab:cd:ef"
    assert out.find("ip").get("address") == "fd00::1"
    assert out.find("bridge").attrib == {"stp": "on", "delay": "0"}  # the defaults the driver writes
    # only the real network driver parses its namespace: passed through as given
    assert out.find(f"{{{DNSMASQ}}}options/{{{DNSMASQ}}}option").get("value") == "log-queries"


def test_each_render_is_a_private_empty_driver():
    desired = ET.fromstring("<network><name>n</name></network>")
    first, second = render.network(desired, "n"), render.network(desired, "n")
    assert first.findtext("uuid") != second.findtext("uuid")  # no state shared between renders


def test_pool_path_is_normalised_as_libvirt_stores_it():
    out = render.pool(ET.fromstring("<pool type='dir'><name>p</name><target><path>/a/b/</path></target></pool>"), "p")
    assert out.findtext("target/path") == "/a/b"


@pytest.mark.parametrize("pool_type, source, fmt", [
    ("dir", "", "raw"),
    ("logical", "<source><name>vg</name></source>", None),
])
def test_volume_default_format_depends_on_the_pool_type(pool_type, source, fmt):
    pool_xml = f"<pool type='{pool_type}'><name>p</name>{source}<target><path>/x</path></target></pool>"
    out = render.volume(pool_xml, ET.fromstring("<volume><name>v</name><capacity>1024</capacity></volume>"), "v")
    found = out.find("target/format")
    assert (found.get("type") if found is not None else None) == fmt


def test_a_definition_libvirt_rejects_fails_with_its_message():
    with pytest.raises(LibvirtModuleError, match="network 'n': libvirt rejects the definition") as caught:
        render.network(ET.fromstring("<network><name>n</name><ip address='not-an-address'/></network>"),
                       "network 'n'")
    assert caught.value.error_code is not None
