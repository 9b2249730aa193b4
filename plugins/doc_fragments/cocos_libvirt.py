"""Documentation shared by the libvirt modules: the connection option, what they need, and the attributes
of the modules that converge an object's definition, active state and autostart."""


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

    # Network and pool converge the same three things (definition, active, autostart) the same way.
    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Reports exactly the changes a real run would make, without making them.
  diff_mode:
    support: full
    description: Shows the canonical definition plus active and autostart before and after.
  idempotent:
    support: full
    description: A second run with the same options reports no change.
"""
