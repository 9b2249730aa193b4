"""libvirt logic behind the Cocos AI Manager's Ansible modules: one manager per libvirt object."""
