#!/usr/bin/env bash
# make demo: converge site.yml on this host with the locally built guest ISO in place of Alpine
# (no Alpine download here), then show what runs. `make` has already run setup and built the guest.
# A second run changes nothing (the recap says changed=0).
#
# Structure: one function per step, called in order from main(). To add a step (e.g. a computation
# run against the agent on 127.0.0.1:$DEMO_AGENT_PORT), write a step_* function and call it at the
# end of main().
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export PATH="$ROOT/.venv/bin:$PATH"

DEMO_DIR="$ROOT/.cache/demo"
GUEST_ISO="$ROOT/build/guest/cocos-guest.iso"
DEMO_DOMAIN=QEmu-alpine-standard-x86_64          # the role's default name, kept on purpose
DEMO_AGENT_PORT=${DEMO_AGENT_PORT:-7020}         # host loopback port forwarded to the agent (guest 7002)
DEMO_MARKER=COCOS-GUEST-READY
DEMO_CONSOLE_LOG="/var/lib/cocos/log/$DEMO_DOMAIN.console.log"

say() { printf '\n== demo: %s\n' "$*"; }

# Variables that swap Alpine for the local guest: file:// ISO with its sha256, QEMU user networking
# with the agent port forwarded to loopback only, and the guest's own boot marker.
write_vars() {
  [ -f "$GUEST_ISO" ] || { echo "demo: $GUEST_ISO is missing; run 'make guest'" >&2; exit 1; }
  mkdir -p "$DEMO_DIR"
  local sum
  sum=$(sha256sum "$GUEST_ISO" | cut -d' ' -f1)
  cat > "$DEMO_DIR/site-vars.json" <<JSON
{
  "alpine_vm_iso_url": "file://$GUEST_ISO",
  "alpine_vm_iso_checksum": "sha256:$sum",
  "alpine_vm_network_mode": "user",
  "alpine_vm_port_forwards": [{"host_address": "127.0.0.1", "host_port": $DEMO_AGENT_PORT, "guest_port": 7002}],
  "alpine_vm_wait_for": "marker",
  "alpine_vm_ready_marker": "$DEMO_MARKER",
  "alpine_vm_wait_timeout": 600
}
JSON
}

step_converge() {
  say "ansible-playbook site.yml (local guest ISO, QEMU user networking 127.0.0.1:$DEMO_AGENT_PORT -> 7002)"
  write_vars
  local start=$SECONDS
  ansible-playbook site.yml -e "@$DEMO_DIR/site-vars.json" | tee "$DEMO_DIR/site.log"
  DEMO_CONVERGE_SECONDS=$((SECONDS - start))
}

step_show() {
  say "what runs now"
  printf 'domain %s: %s\n' "$DEMO_DOMAIN" "$(virsh -c qemu:///system domstate "$DEMO_DOMAIN" | head -1)"
  printf 'console %s: %s\n' "$DEMO_CONSOLE_LOG" \
    "$(grep -a -m1 -o "$DEMO_MARKER.*" "$DEMO_CONSOLE_LOG" | tr -d '\r' || echo "no $DEMO_MARKER")"
  # Forwarded ports as libvirt_domain_info reads them from the live definition.
  ansible localhost -m libvirt_domain_info -a "name=$DEMO_DOMAIN" > "$DEMO_DIR/domain_info.txt"
  python3 - "$DEMO_DIR/domain_info.txt" <<'PY'
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
result = json.loads(text.split(" => ", 1)[1])  # ad-hoc output: "localhost | SUCCESS => {...}"
for dom in result["domains"]:
    for fwd in dom["forwarded_ports"]:
        print(f"forward {fwd['protocol']} {fwd['host_address']}:{fwd['host_port']} -> guest :{fwd['guest_port']}")
PY
  say "recap (a second 'make demo' shows changed=0), converge took ${DEMO_CONVERGE_SECONDS}s"
  grep -A1 '^PLAY RECAP' "$DEMO_DIR/site.log" | tail -1
}

# ---- computation run (issue 5): the same run as tests/integration/test_e2e.py, against the demo VM ----------
step_run() {
  say "computation run: manager -> agent in $DEMO_DOMAIN (127.0.0.1:$DEMO_AGENT_PORT) -> result"
  python scripts/demo_run.py --domain "$DEMO_DOMAIN" --agent-port "$DEMO_AGENT_PORT"
}

main() {
  step_converge
  step_show
  step_run
}

main "$@"
