#!/usr/bin/env bash
# Test hypervisors on one machine: N isolated libvirt hosts, each reached over SSH on its own loopback
# address, as Ansible and libvirt reach real hosts.
#
#   scripts/fleet.sh up N      start hv1..hvN, write build/fleet/inventory.yml (group `hypervisors`)
#   scripts/fleet.sh down      stop them and remove everything they created
#   scripts/fleet.sh status    one line per host
#   scripts/fleet.sh exec hvI CMD...   run CMD inside hvI's mount namespace (what its sshd shows)
#
# A host is a mount namespace (`unshare --mount --propagation private`) in which private directories are
# bind-mounted over /run/libvirt, /var/lib/libvirt, /etc/libvirt (a copy of this machine's, without its
# domain, network, pool and secret definitions), /var/log/libvirt, /var/cache/libvirt and /var/lib/cocos
# (what the roles write), and in which its own virtlogd, libvirtd and sshd run. The network namespace is
# the machine's: sshd listens on 127.0.0.1X:22 only, guests forward their agent port on that same address,
# and each host's NAT network has its own bridge (ctest-h5-hvI) and subnet (10.213.I.0/24), which nothing
# here ever contacts. From outside, libvirt answers on qemu:///system?socket=build/fleet/hvI/run/libvirt-sock
# and on qemu+ssh://root@127.0.0.1X/system (through build/fleet/ssh/ssh, which pins the fleet's key and host
# keys). qemu.conf gets `namespaces = []` and `cgroup_controllers = []`: guests stay in their host's mount
# namespace (so `down` finds every process) and two hosts' same-named domains cannot share a cgroup.
#
# Settings (environment): FLEET_DIR (build/fleet), FLEET_ADDR_BASE (10: hvI listens on 127.0.0.$((10+I))),
# FLEET_SSH_PORT (22), FLEET_BRIDGE_PREFIX (ctest-h5-hv), FLEET_SUBNET_PREFIX (10.213),
# FLEET_GUEST_MEMORY (256MiB), FLEET_AGENT_PORT (7020).
set -euo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
SELF=$ROOT/scripts/fleet.sh
FLEET_DIR=${FLEET_DIR:-$ROOT/build/fleet}
FLEET_ADDR_BASE=${FLEET_ADDR_BASE:-10}
FLEET_SSH_PORT=${FLEET_SSH_PORT:-22}
FLEET_BRIDGE_PREFIX=${FLEET_BRIDGE_PREFIX:-ctest-h5-hv}
FLEET_SUBNET_PREFIX=${FLEET_SUBNET_PREFIX:-10.213}
FLEET_GUEST_MEMORY=${FLEET_GUEST_MEMORY:-256MiB}
FLEET_AGENT_PORT=${FLEET_AGENT_PORT:-7020}
FLEET_MAX_HOSTS=9
SSH_DIR=$FLEET_DIR/ssh
GUEST_ISO=$ROOT/build/guest/cocos-guest.iso
# Directories of this machine each host gets a private copy of: mount point -> name under the host dir.
PRIVATE_DIRS=(/run/libvirt:run /var/lib/libvirt:lib /etc/libvirt:etc /var/log/libvirt:log
              /var/cache/libvirt:cache /var/lib/cocos:cocos)

log() { printf 'fleet: %s\n' "$*"; }
die() { printf 'fleet: %s\n' "$*" >&2; exit 1; }

host_dir() { printf '%s/hv%s' "$FLEET_DIR" "$1"; }
host_addr() { printf '127.0.0.%s' "$((FLEET_ADDR_BASE + $1))"; }
socket_uri() { printf 'qemu:///system?socket=%s/run/libvirt-sock' "$(host_dir "$1")"; }
ssh_uri() {
  local port=""
  [ "$FLEET_SSH_PORT" = 22 ] || port=":$FLEET_SSH_PORT"
  printf 'qemu+ssh://root@%s%s/system?command=%s/ssh' "$(host_addr "$1")" "$port" "$SSH_DIR"
}
host_numbers() {
  local d
  for d in "$FLEET_DIR"/hv*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    printf '%s\n' "${d##*/hv}"
  done | sort -n
}

# ---- which processes belong to a host ----------------------------------------------------------------
# A process is in host I's namespace when its view of /run/libvirt is host I's private run directory:
# exact, unlike a namespace inode number, which the kernel reuses once a namespace is gone.
host_pids() {
  local want pid
  want=$(stat -c %d:%i "$(host_dir "$1")/run" 2>/dev/null) || return 0
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    [ "$(stat -L -c %d:%i "/proc/$pid/root/run/libvirt" 2>/dev/null)" = "$want" ] && printf '%s\n' "$pid"
  done
  return 0
}

# ---- inside the namespace (run by unshare) ---------------------------------------------------------------
inside() {
  local hv=$1 pair
  for pair in "${PRIVATE_DIRS[@]}"; do
    mount --bind "$hv/${pair#*:}" "${pair%%:*}"
  done
  # A host is a fresh hypervisor: root's shell start-up file of this machine (pyenv's init here, ~0.15 s of CPU and
  # a dozen processes) would otherwise run for every command Ansible or libvirt's ssh transport sends (bash reads
  # ~/.bashrc for a command over ssh). An empty file stands in for it in this namespace only.
  local rc
  rc="$(getent passwd root | cut -d: -f6)/.bashrc"
  if [ -f "$rc" ]; then : > "$hv/bashrc"; mount --bind "$hv/bashrc" "$rc"; fi
  virtlogd -d -p "$hv/virtlogd.pid"
  libvirtd -d -p "$hv/libvirtd.pid"
  /usr/sbin/sshd -f "$hv/sshd_config" -E "$hv/sshd.log"
}

# ---- up ------------------------------------------------------------------------------------------------
make_ssh_dir() {
  mkdir -p "$SSH_DIR"
  chmod 700 "$SSH_DIR"
  [ -f "$SSH_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C fleet-controller -f "$SSH_DIR/id_ed25519"
  cp "$SSH_DIR/id_ed25519.pub" "$SSH_DIR/authorized_keys"
  : > "$SSH_DIR/known_hosts"
  : > "$SSH_DIR/config"
  # libvirt's ssh transport runs `command` with ssh's own arguments: pin the fleet's config there.
  printf '#!/bin/sh\nexec ssh -F %s/config "$@"\n' "$SSH_DIR" > "$SSH_DIR/ssh"
  chmod 755 "$SSH_DIR/ssh"
}

# A copy of this machine's libvirt configuration without its objects: no domains (qemu/), networks
# (qemu/networks/), pools (storage/) or secrets; nwfilter's stock filters stay.
copy_etc() {
  local etc=$1
  cp -a /etc/libvirt/. "$etc/"
  rm -rf "$etc/qemu" "$etc/storage" "$etc/secrets"
  cat >> "$etc/qemu.conf" <<'CONF'

# fleet test host (scripts/fleet.sh): guests stay in this host's mount namespace, and no cgroups, so two
# hosts' domains with the same name and id never share /sys/fs/cgroup/*/machine/qemu-1-NAME.
namespaces = [ ]
cgroup_controllers = [ ]
CONF
  cat >> "$etc/libvirtd.conf" <<'CONF'

# fleet test host (scripts/fleet.sh): warnings and errors in its private /var/log/libvirt
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
}

write_sshd_config() {
  local i=$1 hv=$2
  ssh-keygen -q -t ed25519 -N '' -C "hv$i" -f "$hv/ssh_host_ed25519_key"
  cat > "$hv/sshd_config" <<CONF
# hv$i of scripts/fleet.sh: root by the fleet's key only, on this host's loopback address only.
ListenAddress $(host_addr "$i"):$FLEET_SSH_PORT
HostKey $hv/ssh_host_ed25519_key
PidFile $hv/sshd.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
# The fleet's own key in the directory up made; FLEET_DIR may sit below a sticky /tmp that StrictModes refuses.
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 30:50:100
MaxSessions 30
Subsystem sftp internal-sftp
CONF
  printf '[%s]:%s %s\n' "$(host_addr "$i")" "$FLEET_SSH_PORT" "$(cut -d' ' -f1,2 "$hv/ssh_host_ed25519_key.pub")" \
    >> "$SSH_DIR/known_hosts"
  [ "$FLEET_SSH_PORT" = 22 ] && printf '%s %s\n' "$(host_addr "$i")" "$(cut -d' ' -f1,2 "$hv/ssh_host_ed25519_key.pub")" \
    >> "$SSH_DIR/known_hosts"
  cat >> "$SSH_DIR/config" <<CONF
Host hv$i $(host_addr "$i")
  HostName $(host_addr "$i")
  Port $FLEET_SSH_PORT
  User root
CONF
}

finish_ssh_config() {
  cat >> "$SSH_DIR/config" <<CONF
Host *
  IdentityFile $SSH_DIR/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $SSH_DIR/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
CONF
}

# Mount points this machine may lack (a fresh machine has no /var/lib/cocos, no /run/sshd): created here,
# noted, and removed by `down` when still empty.
ensure_dir() {
  [ -d "$1" ] && return 0
  mkdir -p "$1"
  printf '%s\n' "$1" >> "$FLEET_DIR/created-dirs"
}

wait_until() {
  local what=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  # The logs go with the cleanup that follows: quote their ends now.
  tail -n 5 "$FLEET_DIR"/hv*/sshd.log "$FLEET_DIR"/hv*/log/libvirtd.log >&2 2>/dev/null || true
  die "$what did not come up"
}

start_host() {
  local i=$1 hv pair
  hv=$(host_dir "$i")
  mkdir -p "$hv"
  for pair in "${PRIVATE_DIRS[@]}"; do mkdir -p "$hv/${pair#*:}"; done
  copy_etc "$hv/etc"
  # libvirt's probe of the QEMU binaries, valid for the same binaries: saves each host seconds at start.
  [ -d /var/cache/libvirt/qemu/capabilities ] && mkdir -p "$hv/cache/qemu" &&
    cp -a /var/cache/libvirt/qemu/capabilities "$hv/cache/qemu/"
  write_sshd_config "$i" "$hv"
  unshare --mount --propagation private -- "$SELF" _inside "$hv"
}

write_guest_vars() {
  # A snapshot of the guest ISO with a sha256sum-style file beside it (a concurrent `make guest` cannot
  # change it mid-run; the role's default checksum, the URL + .sha256, verifies it).
  [ -f "$GUEST_ISO" ] || .venv/bin/python -m guest.build >/dev/null
  mkdir -p "$FLEET_DIR/guest"
  cp "$GUEST_ISO" "$FLEET_DIR/guest/cocos-guest.iso"
  (cd "$FLEET_DIR/guest" && sha256sum cocos-guest.iso > cocos-guest.iso.sha256)
}

write_inventory() {
  local n=$1 i
  {
    cat <<YAML
---
# Written by scripts/fleet.sh up $n: $n test hypervisors on this machine (removed by scripts/fleet.sh down).
#   ansible-playbook site.yml -i build/fleet/inventory.yml
# cocos_libvirt_uri: how the controller (and the manager) reach the host's libvirt;
# cocos_agent_address: the address its guests' agent forwards listen on.
all:
  children:
    hypervisors:
      vars:
        ansible_user: root
        ansible_ssh_common_args: -F $SSH_DIR/config
        ansible_python_interpreter: /usr/bin/python3
        # Test hosts share this machine's /dev/kvm and /etc/group: leave them alone; TCG guests.
        libvirt_host_manage_kvm_device: false
        libvirt_host_domain_type_override: qemu
        # The locally built guest in place of Alpine (as make demo), small, agent forwarded on loopback.
        # The controller reads the ISO and streams it into each host's ISO pool through cocos_libvirt_uri.
        alpine_vm_iso_url: file://$FLEET_DIR/guest/cocos-guest.iso
        alpine_vm_iso_upload_uri: "{{ cocos_libvirt_uri }}"
        alpine_vm_memory: $FLEET_GUEST_MEMORY
        alpine_vm_network_mode: user
        alpine_vm_wait_for: marker
        alpine_vm_ready_marker: COCOS-GUEST-READY
        alpine_vm_wait_timeout: 600
      hosts:
YAML
    for i in $(seq "$n"); do
      cat <<YAML
        hv$i:
          ansible_host: $(host_addr "$i")
          ansible_port: $FLEET_SSH_PORT
          cocos_libvirt_uri: "$(ssh_uri "$i")"
          cocos_libvirt_socket_uri: "$(socket_uri "$i")"
          cocos_agent_address: $(host_addr "$i")
          libvirt_host_network_bridge: $FLEET_BRIDGE_PREFIX$i
          libvirt_host_network_address: $FLEET_SUBNET_PREFIX.$i.1
          libvirt_host_network_netmask: 255.255.255.0
          libvirt_host_network_dhcp_start: $FLEET_SUBNET_PREFIX.$i.2
          libvirt_host_network_dhcp_end: $FLEET_SUBNET_PREFIX.$i.254
          alpine_vm_port_forwards:
            - {host_address: $(host_addr "$i"), host_port: $FLEET_AGENT_PORT, guest_port: 7002}
YAML
    done
  } > "$FLEET_DIR/inventory.yml.tmp"
  mv "$FLEET_DIR/inventory.yml.tmp" "$FLEET_DIR/inventory.yml"
}

cmd_up() {
  local n=${1:-}
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le "$FLEET_MAX_HOSTS" ] || die "usage: fleet.sh up N (1..$FLEET_MAX_HOSTS)"
  [ "$(id -u)" = 0 ] || die "must run as root (mount namespaces, libvirtd, sshd)"
  [ -z "$(host_numbers)" ] || die "a fleet exists in $FLEET_DIR; run 'scripts/fleet.sh down' first"
  local i
  for i in $(seq "$n"); do
    ! ss -Hltn "sport = :$FLEET_SSH_PORT" | grep -qE "(0\.0\.0\.0|\*|\[::\]|$(host_addr "$i")):$FLEET_SSH_PORT" ||
      die "port $FLEET_SSH_PORT is taken on $(host_addr "$i") (or on all addresses); set FLEET_SSH_PORT"
    ! ip link show "$FLEET_BRIDGE_PREFIX$i" >/dev/null 2>&1 || die "interface $FLEET_BRIDGE_PREFIX$i exists already"
  done
  mkdir -p "$FLEET_DIR"
  # A host that fails to come up takes the ones started before it down with it.
  trap 'status=$?; [ "$status" = 0 ] || { log "up failed: removing what it started"; cmd_down; }; exit "$status"' EXIT
  ensure_dir /var/lib/cocos
  ensure_dir /run/sshd
  write_guest_vars
  make_ssh_dir
  for i in $(seq "$n"); do
    start_host "$i"
  done
  finish_ssh_config
  for i in $(seq "$n"); do
    wait_until "libvirtd of hv$i" 150 virsh -c "$(socket_uri "$i")" version
    wait_until "sshd of hv$i" 50 ssh -F "$SSH_DIR/config" "hv$i" true
  done
  write_inventory "$n"
  trap - EXIT
  log "up: $n hosts; inventory $FLEET_DIR/inventory.yml"
  cmd_status
}

# ---- down ----------------------------------------------------------------------------------------------
# Guests and networks first, through the host's own libvirtd (so it removes their bridges, firewall rules
# and dnsmasq), then every process left in the namespace; the namespace and its mounts go with the last one.
stop_libvirt_objects() {
  local uri dom net
  uri=$(socket_uri "$1")
  virsh -c "$uri" version >/dev/null 2>&1 || return 0
  for dom in $(virsh -c "$uri" list --name 2>/dev/null); do
    virsh -c "$uri" destroy "$dom" >/dev/null 2>&1 || true
  done
  for net in $(virsh -c "$uri" net-list --name 2>/dev/null); do
    virsh -c "$uri" net-destroy "$net" >/dev/null 2>&1 || true
  done
}

kill_host_processes() {
  local i=$1 pids signal
  for signal in TERM TERM TERM KILL; do
    pids=$(host_pids "$i")
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086  # one pid per word
    kill -"$signal" $pids 2>/dev/null || true
    for _ in $(seq 25); do
      pids=$(host_pids "$i")
      [ -z "$pids" ] && return 0
      sleep 0.2
    done
  done
  die "hv$i: processes $(host_pids "$i" | tr '\n' ' ')survive SIGKILL"
}

# If a libvirtd died before it could tear its network down, its bridge and firewall rules are still there:
# remove exactly those (they carry the bridge's name).
purge_network_leftovers() {
  local bridge=$FLEET_BRIDGE_PREFIX$1 tool table rule
  if ip link show "$bridge" >/dev/null 2>&1; then
    ip link delete "$bridge"
  fi
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      "$tool-save" -t "$table" 2>/dev/null | { grep -E "^-A .*[ \"]$bridge([ \"]|$)" || true; } | while read -r rule; do
        # shellcheck disable=SC2086  # iptables-save quotes nothing our bridge rules need kept together
        eval "$tool -w -t $table -D ${rule#-A }" || true
      done
    done
  done
}

# A mount point `up` created goes only when empty and unused: removing a directory that is a mount point in
# another namespace (another fleet's /var/lib/cocos) would detach that mount there, and /run/sshd is every
# sshd's privilege separation directory.
remove_created_dir() {
  local dir=$1
  if grep -q -s -F " $dir " /proc/[0-9]*/mountinfo; then return 0; fi
  if [ "$dir" = /run/sshd ] && pgrep -x sshd >/dev/null; then return 0; fi
  rmdir "$dir" 2>/dev/null || true
}

cmd_down() {
  local i hosts dir
  hosts=$(host_numbers)
  for i in $hosts; do stop_libvirt_objects "$i"; done
  for i in $hosts; do kill_host_processes "$i"; done
  for i in $hosts; do purge_network_leftovers "$i"; done
  if [ -f "$FLEET_DIR/created-dirs" ]; then
    while read -r dir; do remove_created_dir "$dir"; done < "$FLEET_DIR/created-dirs"
  fi
  rm -rf "$FLEET_DIR"
  if [ -n "$hosts" ]; then
    log "down: removed $(printf 'hv%s ' $hosts)and $FLEET_DIR"
  else
    log "down: no fleet in $FLEET_DIR; removed what was left of it"
  fi
}

# ---- status, exec --------------------------------------------------------------------------------------
cmd_status() {
  local i pids
  for i in $(host_numbers); do
    pids=$(host_pids "$i" | wc -l)
    if virsh -c "$(socket_uri "$i")" version >/dev/null 2>&1; then
      printf 'hv%s %s libvirt up, %s processes, %s domains running\n' "$i" "$(host_addr "$i")" "$pids" \
        "$(virsh -c "$(socket_uri "$i")" list --name | grep -c . || true)"
    else
      printf 'hv%s %s libvirt DOWN, %s processes\n' "$i" "$(host_addr "$i")" "$pids"
    fi
  done
}

cmd_exec() {
  local name=${1:-} pid
  [[ "$name" =~ ^hv([0-9]+)$ ]] || die "usage: fleet.sh exec hvI CMD..."
  shift
  local i=${BASH_REMATCH[1]}
  pid=$(cat "$(host_dir "$i")/libvirtd.pid" 2>/dev/null) || die "$name is not up"
  # Not `host_pids | grep -q`: grep's early exit would fail the pipeline (pipefail) on a match.
  grep -qx "$pid" <<< "$(host_pids "$i")" || die "$name's libvirtd (pid $pid) is not running in its namespace"
  exec nsenter --target "$pid" --mount --wd="$CALLER_PWD" -- "$@"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  exec) shift; cmd_exec "$@" ;;
  _inside) inside "$2" ;;
  *) die "usage: fleet.sh up N | down | status | exec hvI CMD..." ;;
esac
