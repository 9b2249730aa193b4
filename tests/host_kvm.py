"""What `domain_type: auto` must pick on the machine the tests run on, worked out here from the host itself, not by
the library's code: kvm exactly when /dev/kvm can be opened for reading and writing, the kvm_pvm module (a
paravirtual nested KVM that hangs standard guests) is not loaded, and libvirt's capabilities for qemu:///system offer
a kvm domain; qemu (TCG) otherwise. Tests assert this instead of assuming a host without KVM."""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET


def expected_auto_domain_type(uri: str = "qemu:///system") -> str:
    caps = ET.fromstring(subprocess.run(["virsh", "-c", uri, "capabilities"], check=True, capture_output=True,
                                        text=True, timeout=60).stdout)
    offers_kvm = any(d.get("type") == "kvm" for d in caps.iter("domain"))
    pvm = os.path.isdir("/sys/module/kvm_pvm")
    if os.path.exists("/proc/modules"):  # not every container has it; /sys/module then says it alone
        with open("/proc/modules", encoding="utf-8") as handle:
            pvm = pvm or any(line.split()[0] == "kvm_pvm" for line in handle if line.strip())
    usable = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
    return "kvm" if offers_kvm and usable and not pvm else "qemu"
