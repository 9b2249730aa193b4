"""The record of what was applied (domain_record) and the decisions the domain manager takes from it,
on test:///default; the same cases on the real qemu:///system are in tests/integration/test_converge_cases.py."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import Any

import libvirt
import pytest

from module_utils.cocos_libvirt import domain, domain_compare, domain_record, domain_xml
from tests.helpers import drop_domains
from tests.unit.test_domain import DEFAULTS

TEST_URI = "test:///default"
NAME = "ctest-h1-rec"
APP = "http://example.org/app/1.0"
XML = f"""<domain type='test'>
  <name>{NAME}</name>
  <metadata><app:info xmlns:app="{APP}"><app:owner>team-a</app:owner></app:info></metadata>
  <memory unit='MiB'>64</memory>
  <os><type arch='i686'>hvm</type></os>
  <devices><interface type='network'><mac address='52:54:00:AB:CD:EF'/><source network='default'/></interface></devices>
</domain>"""


@pytest.fixture
def conn():
    connection = libvirt.open(TEST_URI)
    yield connection
    drop_domains(connection, "ctest-h1-")
    connection.close()


def run(conn: Any, check: bool = False, **params: Any) -> dict[str, Any]:
    module = SimpleNamespace(params={**DEFAULTS, "name": NAME, **params}, check_mode=check, _diff=True)
    return domain.DomainManager(conn, module).run()


def inactive(conn: Any) -> ET.Element:
    return ET.fromstring(conn.lookupByName(NAME).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def no_semantic_comparison(monkeypatch: Any) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the definition was compared although the record says it is converged")
    monkeypatch.setattr(domain_compare, "project", refuse)


def test_define_records_digests_of_desired_and_stored(conn):
    assert run(conn, xml=XML)["actions"] == ["define"]
    root = inactive(conn)
    record = domain_record.found_in(root)
    assert record is not None
    assert record.desired == domain_record.digest(domain_record.strip(ET.fromstring(XML)))
    assert record.stored == domain_record.stored_digest(domain_record.without(root))
    # the user's own metadata stays beside ours
    assert root.find(f"metadata/{{{APP}}}info/{{{APP}}}owner").text == "team-a"


def test_a_recorded_definition_is_converged_without_comparing(conn, monkeypatch):
    run(conn, xml=XML)
    no_semantic_comparison(monkeypatch)
    for check in (False, True):
        again = run(conn, check, xml=XML)
        assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]
        assert "applied" not in again["diff"]["after"]  # our record never shows in a diff


def test_reformatted_xml_is_the_same_desired_definition(conn, monkeypatch):
    run(conn, xml=XML)
    no_semantic_comparison(monkeypatch)
    reformatted = XML.replace("\n  ", "").replace("type='test'", 'type="test"')
    assert not run(conn, xml=reformatted)["changed"]


def test_drift_behind_our_back_is_converged(conn):
    run(conn, xml=XML)
    drifted = ET.tostring(inactive(conn), encoding="unicode").replace(">65536<", ">131072<")
    conn.defineXML(drifted)  # keeps the (now stale) record, as `virsh edit` would
    result = run(conn, xml=XML)
    assert result["actions"] == ["redefine"] and "131072" in result["diff"]["before"]
    assert inactive(conn).findtext("memory") == "65536"
    assert not run(conn, xml=XML)["changed"]


def test_removing_metadata_title_or_description_from_xml_is_a_change(conn):
    titled = XML.replace("<memory", "<title>t</title><description>d</description><memory")
    run(conn, xml=titled)
    bare = XML.split("<metadata>")[0] + XML.split("</metadata>")[1]
    assert run(conn, xml=bare)["actions"] == ["redefine"]
    root = inactive(conn)
    assert root.find(f"metadata/{{{APP}}}info") is None and root.find("title") is None
    assert domain_record.found_in(root) is not None  # ours is written again
    assert not run(conn, xml=bare)["changed"]


def test_xml_copied_from_libvirt_with_our_record_in_it_is_no_other_definition(conn):
    run(conn, xml=XML)
    copied = ET.tostring(inactive(conn), encoding="unicode")
    result = run(conn, xml=copied)
    assert result["actions"] == ["redefine"]  # a different (if equivalent) desired definition
    assert not run(conn, xml=copied)["changed"]
    assert len(inactive(conn).findall(f"metadata/{domain_record.TAG}")) == 1


def test_options_that_describe_less_are_compared_not_redefined(conn):
    """Two tasks describing the same domain with different options must both be converged."""
    run(conn, memory="64MiB", vcpus=2, domain_type="test")
    only_memory = run(conn, memory="64MiB")
    assert not only_memory["changed"], only_memory["actions"]
    assert not run(conn, memory="64MiB", vcpus=2, domain_type="test")["changed"]


def test_other_applications_metadata_survives_a_redefinition_from_options(conn):
    run(conn, memory="64MiB", domain_type="test")
    dom = conn.lookupByName(NAME)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<owner>team-b</owner>", "app", APP,
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert run(conn, memory="96MiB")["actions"] == ["redefine"]
    root = inactive(conn)
    assert root.find(f"metadata/{{{APP}}}owner").text == "team-b" and domain_record.found_in(root) is not None
    assert not run(conn, memory="96MiB")["changed"]


def test_restart_required_follows_the_live_record(conn):
    run(conn, memory="64MiB", domain_type="test", state="running")
    assert not run(conn, memory="64MiB", state="running")["restart_required"]
    grown = [run(conn, memory="96MiB", state="running") for _ in range(2)]
    assert [r["actions"] for r in grown] == [["redefine"], []]
    assert all(r["restart_required"] for r in grown)
    assert run(conn, state="running")["restart_required"]  # a task naming no definition is told too
    restarted = run(conn, memory="96MiB", state="running", allow_restart=True)
    assert restarted["actions"] == ["restart"] and not restarted["restart_required"]
    dom = conn.lookupByName(NAME)
    assert domain_record.live(dom) == domain_record.found_in(inactive(conn))
    assert not run(conn, memory="96MiB", state="running", allow_restart=True)["changed"]


def test_starting_a_definition_without_record_records_it_first(conn):
    """A domain defined by someone else that matches is adopted when started: its live XML then says so."""
    conn.defineXML(domain_xml.to_text(domain_xml.build(NAME, {"memory": "64MiB"}, "test", {})))
    started = run(conn, memory="64MiB", state="running")
    assert started["actions"] == ["start"]
    dom = conn.lookupByName(NAME)
    assert domain_record.live(dom) is not None and domain_record.live(dom) == domain_record.found_in(inactive(conn))
    assert not run(conn, memory="64MiB", state="running")["restart_required"]


def test_state_names_are_one_table_with_blocked_running():
    assert domain.state_name(libvirt.VIR_DOMAIN_BLOCKED) == "blocked"
    assert domain.state_name(libvirt.VIR_DOMAIN_RUNNING) == "running" and domain.state_name(99) == "unknown"
    conn = libvirt.open(TEST_URI)
    try:
        assert domain.state_name(conn.lookupByName("test")) == "running"  # a domain's own state, read
    finally:
        conn.close()
    assert "blocked" in domain.ACTIVE and "blocked" in domain.RUNNING
    assert set(domain.STATE_NAMES) == {getattr(libvirt, n) for n in dir(libvirt) if n.startswith("VIR_DOMAIN_")
                                       and n[len("VIR_DOMAIN_"):] in {"NOSTATE", "RUNNING", "BLOCKED", "PAUSED",
                                                                      "SHUTDOWN", "SHUTOFF", "CRASHED",
                                                                      "PMSUSPENDED"}}


def test_a_whole_xml_replacing_a_whole_xml_drops_what_it_no_longer_says(conn):
    """The semantic comparison cannot tell a part left to libvirt's default from one removed; the record can."""
    crashing = XML.replace("<os>", "<on_crash>preserve</on_crash><os>")
    run(conn, xml=crashing)
    assert inactive(conn).findtext("on_crash") == "preserve"
    assert run(conn, xml=XML)["actions"] == ["redefine"]
    assert inactive(conn).findtext("on_crash") == "destroy"  # libvirt's default again
    assert not run(conn, xml=XML)["changed"]


def test_options_and_an_equivalent_xml_describe_one_domain_without_flapping(conn):
    """A role converges the domain from options, the manager from its shipped xml: both are converged."""
    options = {"memory": "64MiB", "domain_type": "test"}
    run(conn, **options)
    built = domain_xml.build(NAME, {**options, "vcpus": None}, "test", {})
    built.find("memory").attrib, built.find("memory").text = {"unit": "MiB"}, "64"
    same = domain_xml.to_text(built)  # another text (and digest) of the same definition
    for _ in range(2):
        assert not run(conn, xml=same)["changed"]
        assert not run(conn, **options)["changed"]
    assert domain_record.found_in(inactive(conn)).source == "options"  # the record of what was applied stays


@pytest.mark.parametrize("given", [{"xml": XML}, {"memory": "64MiB", "domain_type": "test"}], ids=["xml", "options"])
def test_metadata_another_application_writes_after_our_define_is_no_drift(conn, given):
    """The manager records its placement with virDomainSetMetadata after the playbook defined the domain:
    the next run must not redefine (it reported changed on every POST /domain, and a redefinition from xml
    would erase the placement)."""
    run(conn, **given)
    dom = conn.lookupByName(NAME)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<placement host='hv1'/>", "mgr", "urn:example:placement",
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    again = run(conn, **given)
    assert not again["changed"], again["actions"]
    assert inactive(conn).find("metadata/{urn:example:placement}placement").get("host") == "hv1"


def test_stored_digest_leaves_the_element_as_it_was():
    root = ET.fromstring("<domain><name>d</name><metadata><a xmlns='urn:x'/></metadata><devices><disk device='b'/>"
                         "<disk device='a'/></devices></domain>")
    before = ET.tostring(root)
    domain_record.stored_digest(root)
    assert ET.tostring(root) == before
