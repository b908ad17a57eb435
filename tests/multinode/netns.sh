# Two simulated nodes on one machine: network namespaces joined by a veth pair
# (recipe: /work/shared/ENVIRONMENT.md). Sourced by the tests in this folder.
#   netns_require             skip (exit 77, with the reason) without root or `ip netns`
#   netns_create PREFIX       makes nodes ${PREFIX}a / ${PREFIX}b on 10.77.0.1 / 10.77.0.2
#                             (NODE1, NODE2, IP1, IP2, NET, LINK1, LINK2 are set);
#                             the addresses live only inside the two namespaces
#   netns_destroy             kills what still runs in them and deletes them (call it in a trap)
#   on_node NODE CMD...       runs CMD in NODE's network namespace with NODE as hostname
#   cut_link / restore_link   takes NODE2's end of the link down / up (a network partition)
#   write_rsh_agent FILE      an `mpirun --mca plm_rsh_agent` that "ssh"es into a node
# Every command here touches only the namespaces and links this file created.

netns_require() {
  [[ $(id -u) -eq 0 ]] || { echo "SKIP: network namespaces need root (running as uid $(id -u))"; exit 77; }
  command -v ip >/dev/null || { echo "SKIP: no ip (iproute2) to create network namespaces"; exit 77; }
  command -v unshare >/dev/null || { echo "SKIP: no unshare (util-linux)"; exit 77; }
  local probe="lsprobe$$"
  if ! ip netns add "$probe" 2>/dev/null; then
    echo "SKIP: this machine does not allow network namespaces (ip netns add failed)"; exit 77
  fi
  ip netns del "$probe"
}

NETNS_CREATED=()
netns_create() {
  local p=$1
  NODE1=${p}a NODE2=${p}b LINK1=${p}x LINK2=${p}y
  IP1=10.77.0.1 IP2=10.77.0.2 NET=10.77.0.0/24
  ip netns add "$NODE1" || return 1
  NETNS_CREATED+=("$NODE1")
  ip netns add "$NODE2" || return 1
  NETNS_CREATED+=("$NODE2")
  ip link add "$LINK1" type veth peer name "$LINK2" || return 1
  ip link set "$LINK1" netns "$NODE1" && ip link set "$LINK2" netns "$NODE2" || return 1
  ip -n "$NODE1" addr add "$IP1/24" dev "$LINK1" && ip -n "$NODE2" addr add "$IP2/24" dev "$LINK2" || return 1
  for n in "$NODE1" "$NODE2"; do ip -n "$n" link set lo up || return 1; done
  ip -n "$NODE1" link set "$LINK1" up && ip -n "$NODE2" link set "$LINK2" up || return 1
  # Bounded wait until both ends report the link up.
  for _ in $(seq 50); do
    [[ $(ip -n "$NODE1" -br link show "$LINK1") == *" UP "* && $(ip -n "$NODE2" -br link show "$LINK2") == *" UP "* ]] &&
      return 0
    sleep 0.1
  done
  return 1
}

# Processes still running in our namespaces: TERM, then KILL (bounded).
netns_kill_all() {
  local n pids
  for sig in TERM KILL; do
    for n in "${NETNS_CREATED[@]}"; do
      pids=$(ip netns pids "$n" 2>/dev/null)
      [[ -n $pids ]] && kill -"$sig" $pids 2>/dev/null
    done
    for _ in $(seq 30); do
      pids=""
      for n in "${NETNS_CREATED[@]}"; do pids+=$(ip netns pids "$n" 2>/dev/null); done
      [[ -z $pids ]] && break
      sleep 0.1
    done
  done
}

netns_destroy() {
  netns_kill_all
  local n
  for n in "${NETNS_CREATED[@]}"; do ip netns del "$n" 2>/dev/null; done
  NETNS_CREATED=()
}

on_node() {
  local node=$1
  shift
  ip netns exec "$node" unshare --uts bash -c 'hostname "$0"; exec "$@"' "$node" "$@"
}

cut_link() { ip -n "$NODE2" link set "$LINK2" down; }
restore_link() { ip -n "$NODE2" link set "$LINK2" up; }

# mpirun runs `AGENT HOST orted ...` to start its daemon on HOST: the agent maps the
# address to its namespace and runs the command there, as ssh would on a real node.
write_rsh_agent() {
  cat > "$1" <<AGENT
#!/bin/bash
host=\$1; shift
case \$host in
  $IP1|$NODE1) ns=$NODE1 ;;
  $IP2|$NODE2) ns=$NODE2 ;;
  *) echo "rsh agent: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$ns; exec \$*"
AGENT
  chmod 755 "$1"
}

# A whole-test time budget, kept below the ctest TIMEOUT so the EXIT trap always runs
# (a ctest timeout kills the script without it): every wait takes min(its own bound,
# what is left).
#   budget_init SECONDS; left SECONDS -> min(SECONDS, time left), at least 1
#   wait_until SECONDS CMD...        -> polls CMD every 0.1 s; its status at the end
budget_init() { BUDGET_END=$((SECONDS + $1)); }
left() {
  local l=$((BUDGET_END - SECONDS))
  (( l > $1 )) && l=$1
  (( l < 1 )) && l=1
  echo "$l"
}
wait_until() {
  local end=$((SECONDS + $(left "$1")))
  shift
  while (( SECONDS < end )); do "$@" && return 0; sleep 0.1; done
  "$@"
}

# Elapsed time without bc: now_ms, then secs_since T0_MS -> "12.34".
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs_since() {
  local ms=$(( $(now_ms) - $1 ))
  printf '%d.%02d' $((ms / 1000)) $(((ms % 1000) / 10))
}
