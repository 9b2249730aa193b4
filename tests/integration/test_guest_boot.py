"""Boot the built guest ISO under TCG on the real libvirtd: marker, agent over the forwarded port, ACPI power-off.

Here UEFI (OVMF, shim, GRUB) with an emulated TPM 2.0, Secure Boot on and Microsoft's keys enrolled; the guest says on
its console how it was booted. The other ways are booted where they are used, and their console lines are checked
there: UEFI with the TPM and without Secure Boot by test_e2e, BIOS (SeaBIOS, isolinux) by Molecule's default scenario
(the alpine_vm role's VM). Each boot is one TCG boot, the suite's costliest step.
"""
import subprocess
import uuid
from pathlib import Path

import libvirt
import pytest

import guest
from guest import vm
from guest.build import ensure_built

pytestmark = [pytest.mark.system, pytest.mark.vm]

WORK = Path("/var/lib/cocos-test/guest")
BOOT_TIMEOUT = 120  # about 5 s on an idle machine; two minutes leaves room for a loaded CI runner
UEFI_BOOT_TIMEOUT = 600  # OVMF's own start costs ~10 s of emulated CPU more; a loaded runner multiplies it
AGENT_TIMEOUT = 60
SHUTDOWN_TIMEOUT = 30


# boot -> (guest.domain options, the console's platform line: firmware, kernel lockdown, TPM version)
BOOTS = {
    # the kernel locks itself down (integrity) only when it was verified through shim and GRUB
    "uefi-secure-boot-tpm": ({"firmware": "efi", "secure_boot": True, "tpm": "tpm-crb"},
                             "firmware=uefi lockdown=integrity tpm=2"),
}


@pytest.fixture(scope="module", params=list(BOOTS))
def booted(request):
    built = ensure_built()
    name = f"ctest-guest-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(vm.URI)
    options, platform = BOOTS[request.param]
    try:
        running = vm.start(conn, name, built, WORK / name, **options)
        running.boot_seconds = vm.wait_for_marker(running, UEFI_BOOT_TIMEOUT if options else BOOT_TIMEOUT)
        running.platform = platform
        yield running
    finally:
        vm.remove(conn, name, WORK / name)
        conn.close()


def test_console_shows_marker_after_network(booted):
    log = booted.console.read_text(errors="replace")
    assert f"cocos-init: platform {booted.platform}" in log
    assert "cocos-init: eth0 10.0.2.15/24" in log
    assert log.index("cocos-init: eth0") < log.index(guest.MARKER)  # the marker never precedes the address
    assert "insmod" not in log, "a kernel module failed to load"
    print(f"boot to marker: {booted.boot_seconds:.1f} s")


def test_agent_answers_health_check_on_forwarded_port(booted):
    if not booted.manifest["agent"]:
        vm.wait_for_console(booted.console, guest.AGENT_MISSING_MARKER, 10)
        pytest.fail("the guest image has no agent (COCOS-AGENT-MISSING on its console): rebuild it with `make guest`")
    print(f"agent SERVING {vm.wait_for_agent(booted.port, AGENT_TIMEOUT):.1f} s after the marker")


def test_virsh_shutdown_powers_off(booted):
    subprocess.run(["virsh", "-c", vm.URI, "shutdown", booted.name], check=True, capture_output=True)
    vm.wait_for_shutoff(booted, SHUTDOWN_TIMEOUT)
    assert "COCOS-GUEST-POWEROFF" in booted.console.read_text(errors="replace")


def test_iso_has_bios_and_uefi_boot_entries():
    report = subprocess.run(["xorriso", "-indev", str(ensure_built().iso), "-report_el_torito", "plain"],
                            check=True, capture_output=True, text=True).stdout
    entries = [line for line in report.splitlines() if line.startswith("El Torito boot img :")]
    assert [line.split()[6] for line in entries] == ["BIOS", "UEFI"], report


def test_direct_boot_passes_kernel_env_to_agent():
    """vmlinuz + initrd.img boot without firmware; cocos.env.AGENT_GRPC_PORT moves the agent, and only the
    forward to the moved port reaches it, so a SERVING answer proves the command-line hook end to end."""
    built = ensure_built()
    assert built.manifest["agent"], "the guest image has no agent: rebuild it with `make guest`"
    name = f"ctest-guest-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(vm.URI)
    try:
        running = vm.start(conn, name, built, WORK / name, direct=True, guest_port=7010,
                           cmdline="console=ttyS0,115200 quiet panic=5 cocos.env.AGENT_GRPC_PORT=7010")
        vm.wait_for_marker(running, BOOT_TIMEOUT)
        vm.wait_for_agent(running.port, AGENT_TIMEOUT)
        assert "starting agent on 0.0.0.0:7010" in running.console.read_text(errors="replace")
    finally:
        vm.remove(conn, name, WORK / name)
        conn.close()
