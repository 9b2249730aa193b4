"""Alpine guest support behind the Cocos AI Manager's Ansible modules; nothing here knows libvirt."""
