# Shared by tests/slurm/slurm_test.sh and tests/multinode/slurm_test.sh (sourced):
# stopping a daemon by its pid file, the test Slurm's munged, and the slurm.conf
# settings both clusters use (recipe: /work/shared/ENVIRONMENT.md).

stop_pid() {  # pid file: TERM, bounded wait, KILL
  [[ -f $1 ]] || return 0
  local pid
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
}

start_munge() {  # munge dir: a fresh key, munged with its socket in DIR/run (readable by all)
  local m=$1
  mkdir -p "$m"/{etc,run,log,lib} && chmod 755 "$m" "$m/run" && chmod 700 "$m"/{etc,log,lib} || return 1
  head -c 1024 /dev/urandom > "$m/etc/munge.key" && chmod 400 "$m/etc/munge.key" || return 1
  munged --key-file="$m/etc/munge.key" --socket="$m/run/munge.socket.2" --pid-file="$m/run/munged.pid" \
         --log-file="$m/log/munged.log" --seed-file="$m/lib/munged.seed"
}

slurm_common_conf() {  # munge dir, slurm dir: the lines of slurm.conf both test clusters share
  cat <<CONF
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$1/run/munge.socket.2
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
StateSaveLocation=$2/state
SlurmctldPidFile=$2/run/slurmctld.pid
SlurmctldLogFile=$2/log/slurmctld.log
CONF
}
