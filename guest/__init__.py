"""Cocos test guest: a Debian kernel plus an initramfs with busybox, Python 3, gRPC and the agent.

`python -m guest.build` (`make guest`) builds `build/guest/{cocos-guest.iso,vmlinuz,initrd.img}`;
`domain_xml()` renders the TCG domain that boots it with the agent port forwarded to loopback, under BIOS or
UEFI (firmware="efi", optionally secure_boot=True), with an emulated TPM 2.0 if asked (tpm="tpm-crb").
"""

from guest.contract import AGENT_MISSING_MARKER, AGENT_PORT, MARKER
from guest.domain import domain_xml

__all__ = ["AGENT_MISSING_MARKER", "AGENT_PORT", "MARKER", "domain_xml"]
