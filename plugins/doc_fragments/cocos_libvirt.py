"""Documentation shared by every libvirt module: the connection option and what they need."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  uri:
    description: libvirt connection URI, local (V(qemu:///system)) or remote (V(qemu+ssh://host/system)).
    type: str
    default: qemu:///system
requirements:
  - libvirt-python
"""
