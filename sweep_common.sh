# Shared by sweep_minibatch.sh and sweep_env_rollout.sh (sourced, not run): option parsing and checks, run
# naming, the check of the runs already in the runs folder, and the grouping of the runs into processes. The
# local runner is in sweep_local.sh, the SLURM launcher in sweep_slurm.sh. The caller sets its defaults and
# usage(), checks its own options, fills the run list with add_training_run and calls run_sweep.

# The options both sweeps take, with their defaults (ENVS, SEEDS, TOTAL_TIMESTEPS and RUNS_DIR are the caller's).
JOBS=""
DRY_RUN=0
PYTHON=${PYTHON:-python}
EXTRA=()
# CleanRL's normalisation, one running mean/var per env: what the paper ran (the training script's default is shared)
NORM_STATS=per-env
# every 2 iterations = every 100,000 env steps at the sweeps' 50,000-step batches: every setting at the same steps
EVAL_EVERY=2
SEEDS_PER_PROCESS=auto
PROGRESS_EVERY=60
LAUNCHER=local
PARTITION=""
TIME_LIMIT=""
CPUS_PER_TASK=1
GPUS=""
MEM=""
REQUEUE_BEFORE=300
SLURM_FLAGS_GIVEN=()
LOCAL_FLAGS_GIVEN=()

# One line on stderr and exit 2: how every bad option ends, before any run starts.
error() {
  echo "error: $*" >&2
  exit 2
}

# The value of option $1, or an error when it has none.
value() {
  if (($# < 2)) || [[ $2 == --* ]]; then
    error "$1 needs a value (see --help)"
  fi
  [[ -n $2 ]] || error "$1 needs a value, got an empty one (see --help)"
  echo "$2"
}

# The options of usage(), for the message about an unknown one.
option_names() {
  usage | grep -oE '^  --[a-z-]+' | tr -d ' ' | tr '\n' ' '
  echo "-h --help"
}

check_positive_int() {
  # at most 18 digits, so that bash's 64-bit arithmetic holds it; no leading zero, which bash reads as octal
  [[ $2 =~ ^[1-9][0-9]{0,17}$ ]] || error "$1 takes positive integers, got '$2'"
}

check_seed() {
  # seeds of the training script: env i of seed s gets seed s + i, in [0, 2^32)
  [[ $2 =~ ^(0|[1-9][0-9]{0,9})$ ]] && (($2 < 2147483648)) ||
    error "$1 takes integers from 0 to 2147483647, like '1 2 3', got '$2'"
}

# Splits list option $1 (value $2: words separated by spaces or commas) into LIST. The list must not be empty
# ($3 says what it takes, for the message) nor give a value twice, which would name two runs alike.
split_list() {
  local flag=$1 what=$3 v
  local -A seen=()
  read -r -a LIST <<<"${2//,/ }"
  ((${#LIST[@]} > 0)) || error "$flag takes $what, got none"
  for v in "${LIST[@]}"; do
    [[ -z ${seen[$v]:-} ]] || error "$flag gives '$v' twice; it takes $what, each once"
    seen[$v]=1
  done
}

# Checks minibatch size $1 of N_env $2 x N_rollout $3 ($4: the option that set the size, $5: the message when it
# does not divide the batch), and that every run is at least one iteration long.
check_setting() {
  local size=$1 num_envs=$2 num_steps=$3 batch=$(($2 * $3))
  ((batch % size == 0)) || error "$5"
  if ((size < 2)) && [[ " ${EXTRA[*]-} " != *" --no-norm-adv "* ]]; then
    error "$4 takes sizes of 2 or more (the advantages of a minibatch are normalised by their std; or -- --no-norm-adv), got $size"
  fi
  ((TOTAL_TIMESTEPS >= batch)) ||
    error "--total-timesteps takes at least one iteration, N_env x N_rollout = $num_envs x $num_steps = $batch steps, got $TOTAL_TIMESTEPS"
}

# The run name of env $1, N_env $2, N_rollout $3, minibatch size $4 and seed $5 ({seed}: the training script's
# placeholder for each seed of a process).
run_name() { echo "${1}__${2}x${3}__mb${4}__s${5}"; }

# The sweep's runs, in launch order; the runs of a setting follow each other.
RUN_NAMES=()
RUN_SETTINGS=()
RUN_SEEDS=()

# Adds the training run of one setting: env, seed, N_env, N_rollout, minibatch size.
add_training_run() {
  local env=$1 seed=$2 num_envs=$3 num_steps=$4 size=$5
  RUN_NAMES+=("$(run_name "$env" "$num_envs" "$num_steps" "$size" "$seed")")
  RUN_SETTINGS+=("$env $num_envs $num_steps $size")
  RUN_SEEDS+=("$seed")
}

# The flags of every run after its setting's, before its --run-name.
common_training_flags() {
  COMMON_FLAGS=(--total-timesteps "$TOTAL_TIMESTEPS" --norm-stats "$NORM_STATS" --eval-every "$EVAL_EVERY"
    --runs-dir "$RUNS_DIR")
}

# Sets CMD to the training command of setting $1 (env N_env N_rollout size), seeds $2 .. $2 + $3 - 1, run name
# (or template) $4.
training_command() {
  local env num_envs num_steps size
  read -r env num_envs num_steps size <<<"$1"
  local argv=("$PYTHON" "$HERE/ppo_continuous_kl.py" --env-id "$env" --seed "$2")
  (($3 == 1)) || argv+=(--num-seeds "$3")
  common_training_flags
  # one core's worth of env threads a run: the local runner runs one per core, SLURM gives each --cpus-per-task
  local env_threads=1
  [[ $LAUNCHER == local ]] || env_threads=$CPUS_PER_TASK
  argv+=(--num-envs "$num_envs" --num-steps "$num_steps" --minibatch-size "$size" "${COMMON_FLAGS[@]}"
    --env-threads "$env_threads" --run-name "$4" ${EXTRA[@]+"${EXTRA[@]}"})
  CMD=$(printf '%q ' "${argv[@]}")
  CMD=${CMD% }
}

default_jobs() {
  # One run per core: a run is single-threaded (torch --num-threads 1; the KL worker thread uses the time the
  # update loop leaves), so more runs than cores only slow each other down. With a GPU the env stepping still
  # runs on the CPU, so the cores stay the limit.
  nproc 2>/dev/null || echo 1
}

# What both sweeps do, for their --help.
sweep_description() {
  cat <<TEXT
N processes at a time, each process's output in RUNS_DIR/logs/NAME.log, a progress line as each starts and
ends and every --progress-every seconds. Run names are ENV__{N_env}x{N_rollout}__mb{SIZE}__s{SEED}. SIGTERM,
Ctrl-C or SIGHUP stops the sweep: its runs write a checkpoint and exit, and so does the sweep (exit 128 + the
signal's number). A second launch skips runs that completed (their folder holds summary.json),
resumes those that hold a checkpoint.pt and starts again the others. Runs already in RUNS_DIR that ran with
other flags than the sweep's (another --total-timesteps, other flags after --, ...) are neither skipped nor
rerun: the sweep refuses to start, lists them and their flags, and leaves the choice (another --runs-dir, or
delete them to run them again). A failed run does not stop the others; the sweep then exits 1 and lists them.
A bad option ends the sweep with one line "error: ..." and exit 2 before any run starts.
TEXT
}

# The options both sweeps take, for their --help.
common_usage() {
  cat <<TEXT
  --envs "A B"            envs (default: $ENVS)
  --seeds "1 2"           seeds, integers from 0 (default: $SEEDS)
  --total-timesteps N     env steps per run (default: $TOTAL_TIMESTEPS; the paper does not state its own)
  --norm-stats MODE       per-env or shared: the runs' observation/reward normalisation statistics (default:
                          $NORM_STATS, one running mean/var per env as CleanRL keeps them, which is what the paper
                          ran, and the training script's default; shared: one for all of a run's envs)
  --eval-every N          evaluate each run every N iterations and after its last, on separate envs, into
                          eval/episodic_return (default: $EVAL_EVERY, i.e. every 100,000 env steps of the sweeps'
                          50,000-step batches: every setting is evaluated at the same env steps, so their returns
                          compare step for step; 0: no evaluation)
  --seeds-per-process K   train up to K consecutive seeds of a setting in one process, in lockstep (the training
                          script's --num-seeds; the run name is then passed with {seed}), into the usual run
                          folders; a relaunch groups only the seeds not completed; a process of seeds A..B logs to
                          ENV__..__sA-B.log. all: every seed of a setting in one process. Default: auto, all when
                          the runs get a GPU (local: nvidia-smi lists one; slurm: --gpus), else 1: on a CPU, a
                          population costs each seed what a single run costs (README, How fast), and single runs
                          spread over the cores
  --runs-dir DIR          where the run folders go (default: $RUNS_DIR)
  --jobs N                processes at a time (default: one per core, $(default_jobs) here, since a run is
                          single-threaded; under slurm: array tasks at a time, default no limit)
  --progress-every S      local: a progress line every S seconds while runs go: runs done, running and left,
                          elapsed, and the time left estimated from the runs' times and progress (default: $PROGRESS_EVERY)
  --launcher local|slurm  local runs them here (default); slurm submits the processes not yet completed as one
                          SLURM job array, one process per task, requeued on preemption and before its time
                          limit, each resuming from its checkpoint. Its scripts go to RUNS_DIR/slurm/
  --partition P           slurm: partition (default: the cluster's)
  --time T                slurm: time limit of each task, as sbatch takes it: MM, HH:MM:SS, D-HH:MM
                          (default: the partition's); a longer run is requeued and resumes
  --cpus-per-task N       slurm: cores per task (default: $CPUS_PER_TASK; a run is single-threaded)
  --gpus G                slurm: GPUs per task, N or TYPE:N (default: none)
  --mem M                 slurm: memory per task, like 4G (default: the partition's)
  --requeue-before S      slurm: this many seconds before its time limit a run is stopped (it checkpoints) and
                          requeued with a fresh limit (default: $REQUEUE_BEFORE; longer than one iteration)
  --dry-run               print one command per line (a "#" line before those that resume, for the runs skipped
                          as completed and for a folder deleted to start afresh), run nothing; slurm: the sbatch
                          command, the array script and its command list, submit nothing
  -h, --help              this text
TEXT
}

# Parses one option that both sweeps take; sets CONSUMED to the number of words it used.
parse_common_option() {
  case $1 in
    --envs) ENVS=$(value "$@"); CONSUMED=2 ;;
    --seeds) SEEDS=$(value "$@"); CONSUMED=2 ;;
    --total-timesteps) TOTAL_TIMESTEPS=$(value "$@"); CONSUMED=2 ;;
    --norm-stats) NORM_STATS=$(value "$@"); CONSUMED=2 ;;
    --eval-every) EVAL_EVERY=$(value "$@"); CONSUMED=2 ;;
    --seeds-per-process) SEEDS_PER_PROCESS=$(value "$@"); CONSUMED=2 ;;
    --runs-dir) RUNS_DIR=$(value "$@"); CONSUMED=2 ;;
    --jobs) JOBS=$(value "$@"); CONSUMED=2 ;;
    --progress-every) PROGRESS_EVERY=$(value "$@"); CONSUMED=2; LOCAL_FLAGS_GIVEN+=("$1") ;;
    --launcher) LAUNCHER=$(value "$@"); CONSUMED=2 ;;
    --partition) PARTITION=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --time) TIME_LIMIT=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --cpus-per-task) CPUS_PER_TASK=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --gpus) GPUS=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --mem) MEM=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --requeue-before) REQUEUE_BEFORE=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --dry-run) DRY_RUN=1; CONSUMED=1 ;;
    -h | --help) usage; exit 0 ;;
    --) CONSUMED=$#; shift; EXTRA=("$@") ;;
    *) error "unknown option $1; the options are $(option_names) (see --help)" ;;
  esac
}

# The training flags that the sweep sets for each run, which the flags after -- must leave alone.
SWEEP_SETS=(--env-id --seed --num-seeds --num-envs --num-steps --minibatch-size --num-minibatches --total-timesteps
  --norm-stats --eval-every --runs-dir --run-name)

# Checks the options both sweeps take, once parsed.
check_common_options() {
  check_positive_int --total-timesteps "$TOTAL_TIMESTEPS"
  split_list --envs "$ENVS" "Gymnasium env ids, like 'Hopper-v5 Ant-v5'"
  ENV_LIST=("${LIST[@]}")
  local env seed word
  for env in "${ENV_LIST[@]}"; do
    [[ $env != */* ]] || error "--envs takes Gymnasium env ids without '/' (a run's folder is named after its env), got '$env'"
  done
  read -r -a LIST <<<"${SEEDS//,/ }"
  for seed in ${LIST[@]+"${LIST[@]}"}; do check_seed --seeds "$seed"; done
  split_list --seeds "$SEEDS" "integers from 0 to 2147483647, like '1 2 3'"
  SEED_LIST=("${LIST[@]}")
  case $NORM_STATS in
    shared | per-env) ;;
    *) error "--norm-stats takes per-env or shared, got '$NORM_STATS'" ;;
  esac
  [[ $EVAL_EVERY =~ ^(0|[1-9][0-9]{0,8})$ ]] ||
    error "--eval-every takes an integer >= 0 (iterations; 0: no evaluation), got '$EVAL_EVERY'"
  case $SEEDS_PER_PROCESS in
    all) SEEDS_PER_PROCESS=${#SEED_LIST[@]} ;;
    auto)
      SEEDS_PER_PROCESS=1
      if { [[ $LAUNCHER == slurm && -n $GPUS ]]; } ||
        { [[ $LAUNCHER == local ]] && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }; then
        SEEDS_PER_PROCESS=${#SEED_LIST[@]}
      fi
      ;;
    *) [[ $SEEDS_PER_PROCESS =~ ^[1-9][0-9]{0,17}$ ]] ||
      error "--seeds-per-process takes a positive integer, all or auto, got '$SEEDS_PER_PROCESS'" ;;
  esac
  if ((SEEDS_PER_PROCESS > 1)); then
    # consecutive seeds share a process
    mapfile -t SEED_LIST < <(printf '%s\n' "${SEED_LIST[@]}" | sort -n)
  fi
  local set
  for word in ${EXTRA[@]+"${EXTRA[@]}"}; do
    # --flag=value and --flag_name are the same flag to the training script
    word=${word%%=*}
    for set in "${SWEEP_SETS[@]}"; do
      if [[ ${word//_/-} == "$set" ]]; then
        error "the flags after -- may not set $word, which the sweep sets for each run (see --help for its own options)"
      fi
    done
  done
  case $LAUNCHER in
    local)
      if ((${#SLURM_FLAGS_GIVEN[@]} > 0)); then
        error "${SLURM_FLAGS_GIVEN[0]} needs --launcher slurm (see --help)"
      fi
      JOBS=${JOBS:-$(default_jobs)}
      check_positive_int --jobs "$JOBS"
      check_positive_int --progress-every "$PROGRESS_EVERY"
      ;;
    slurm)
      if ((${#LOCAL_FLAGS_GIVEN[@]} > 0)); then
        error "${LOCAL_FLAGS_GIVEN[0]} needs --launcher local (see --help)"
      fi
      check_slurm_options
      ;;
    *) error "--launcher takes local or slurm, got '$LAUNCHER'" ;;
  esac
  check_runs_dir
}

# The runs folder must be a folder this user can write into, or one that can be made (make_runs_dir makes it).
check_runs_dir() {
  local dir=$RUNS_DIR
  [[ ! -e $dir || -d $dir ]] || error "--runs-dir takes a folder, got '$RUNS_DIR', which is a file"
  # the deepest part of the path that exists
  while [[ ! -e $dir ]]; do dir=$(dirname -- "$dir"); done
  [[ -d $dir ]] || error "--runs-dir takes a folder, got '$RUNS_DIR', which lies under the file $dir"
  [[ -w $dir && -x $dir ]] || error "--runs-dir takes a folder this user can write into, got '$RUNS_DIR' ($dir is not writable)"
}

# Makes the runs folder and proves it writable, once every option has been checked.
make_runs_dir() {
  local probe
  if ! mkdir -p -- "$RUNS_DIR/logs" 2>/dev/null || ! probe=$(mktemp "$RUNS_DIR/logs/.write-test.XXXXXX" 2>/dev/null); then
    error "--runs-dir takes a folder this user can write into, got '$RUNS_DIR', which cannot be written"
  fi
  rm -f -- "$probe"
}

# The run folders already in RUNS_DIR that hold summary.json or checkpoint.pt, checked against this sweep's flags:
# one Python process reads their args.json and compares it with the sweep's flags, parsed and compared as the
# training script does. Any difference refuses the sweep, with the runs and their flags listed. It also reads
# the iteration of each checkpoint into CHECKPOINT_ITERATIONS, so that only runs cut short at the same iteration
# resume as one process.
declare -A CHECKPOINT_ITERATIONS=()
check_recorded_flags() {
  local i records=()
  for i in "${!RUN_NAMES[@]}"; do
    if [[ -f $RUNS_DIR/${RUN_NAMES[$i]}/summary.json ]]; then
      records+=("${RUN_NAMES[$i]} ${RUN_SETTINGS[$i]} ${RUN_SEEDS[$i]} finished")
    elif [[ -f $RUNS_DIR/${RUN_NAMES[$i]}/checkpoint.pt ]]; then
      records+=("${RUN_NAMES[$i]} ${RUN_SETTINGS[$i]} ${RUN_SEEDS[$i]} checkpoint")
    fi
  done
  ((${#records[@]} > 0)) || return 0
  common_training_flags
  local out differing="" kind name rest
  # an error of its own (flags the training script refuses) is its one line on stderr
  out=$(printf '%s\n' "${records[@]}" |
    "$PYTHON" -c "$FLAG_CHECK_PY" "$HERE" "$RUNS_DIR" "${COMMON_FLAGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}) || exit 2
  while read -r kind name rest; do
    case $kind in
      differs) differing+="  $name $rest"$'\n' ;;
      iteration) CHECKPOINT_ITERATIONS[$name]=$rest ;;
    esac
  done <<<"$out"
  [[ -n $differing ]] || return 0
  echo "these runs in $RUNS_DIR ran with other flags than this sweep's (this sweep's value, then the run's):" >&2
  printf '%s' "$differing" >&2
  error "$(printf '%s' "$differing" | wc -l) run(s) in $RUNS_DIR (listed above) ran with other flags than this sweep's; nothing was started. Launch with their flags, or pick another --runs-dir, or delete those run folders to run them again with these flags"
}

# stdin: "NAME ENV N_ENV N_ROLLOUT SIZE SEED finished|checkpoint" per run; argv: repo, runs folder, the flags
# every run gets. Prints "differs NAME: --flag now (run: before), ..." for each run whose args.json differs, and
# "iteration NAME I" for each readable checkpoint of a run not finished.
FLAG_CHECK_PY='
import json, os, sys
from dataclasses import asdict, replace
runs_dir, common = sys.argv[2], sys.argv[3:]
sys.path.insert(0, sys.argv[1])
try:
    import torch
    import tyro
    from ppo_continuous_kl import Args, check_args
    from run_folder import describe_flags, differing_flags
except ImportError as e:
    sys.exit(f"error: cannot check the runs in {runs_dir} against the sweep\x27s flags: {sys.executable} cannot import the "
             f"training script ({e}); set PYTHON to the Python of its environment")
try:
    base = tyro.cli(Args, args=common)
except SystemExit:
    sys.exit("error: the training script refuses the flags this sweep passes (its message above)")
settings = {}
for line in sys.stdin:
    name, env, num_envs, num_steps, size, seed, state = line.split()
    key = (env, num_envs, num_steps, size)
    if key not in settings:
        settings[key] = asdict(check_args(replace(base, env_id=env, num_envs=int(num_envs), num_steps=int(num_steps),
                                                  minibatch_size=int(size))))
    now = settings[key] | {"seed": int(seed), "run_name": name}
    try:
        with open(os.path.join(runs_dir, name, "args.json")) as f:
            before = json.load(f)
    except (OSError, ValueError) as e:
        print(f"differs {name}: no readable args.json ({e})")
        continue
    differing = differing_flags(before, now)
    if differing:
        print(f"differs {name}: " + describe_flags(differing, before, now, "run"))
    elif state == "checkpoint":
        try:
            print(f"iteration {name}", int(torch.load(os.path.join(runs_dir, name, "checkpoint.pt"), map_location="cpu",
                                                   weights_only=False)["iteration"]))
        except Exception:
            pass  # the training script says what is wrong with it
'

# Groups the runs not yet completed into processes: up to SEEDS_PER_PROCESS consecutive seeds of one setting, all
# starting afresh or all cut short at the same iteration (check_recorded_flags read it). Fills PROC_NAMES (the
# log's name: the run's, or ENV__..__sA-B), PROC_MEMBERS (their run names, space-separated), PROC_SIZES (how
# many), PROC_CMDS and PROC_RESUMES (1 when resuming), and SKIPPED, the completed runs.
plan_processes() {
  PROC_NAMES=() PROC_MEMBERS=() PROC_SIZES=() PROC_CMDS=() PROC_RESUMES=() SKIPPED=0
  local i group=() setting="" state="" last=-2 now
  for i in "${!RUN_NAMES[@]}"; do
    if [[ -f $RUNS_DIR/${RUN_NAMES[$i]}/summary.json ]]; then
      SKIPPED=$((SKIPPED + 1))
      continue
    fi
    now=fresh
    if [[ -f $RUNS_DIR/${RUN_NAMES[$i]}/checkpoint.pt ]]; then
      # a checkpoint that could not be read resumes alone: the training script says what is wrong with it
      now="checkpoint ${CHECKPOINT_ITERATIONS[${RUN_NAMES[$i]}]:-unread $i}"
    fi
    if ((${#group[@]} == 0 || ${#group[@]} >= SEEDS_PER_PROCESS || RUN_SEEDS[i] != last + 1)) ||
      [[ ${RUN_SETTINGS[$i]} != "$setting" || $now != "$state" ]]; then
      ((${#group[@]} == 0)) || add_process "${group[@]}"
      group=()
    fi
    group+=("$i")
    setting=${RUN_SETTINGS[$i]} state=$now last=${RUN_SEEDS[$i]}
  done
  ((${#group[@]} == 0)) || add_process "${group[@]}"
}

# Adds the process of runs $@ (indexes of consecutive seeds of one setting).
add_process() {
  local first=$1 last=${!#} i members=""
  local env num_envs num_steps size
  read -r env num_envs num_steps size <<<"${RUN_SETTINGS[$first]}"
  for i in "$@"; do members+="${members:+ }${RUN_NAMES[$i]}"; done
  if (($# == 1)); then
    PROC_NAMES+=("${RUN_NAMES[$first]}")
    training_command "${RUN_SETTINGS[$first]}" "${RUN_SEEDS[$first]}" 1 "${RUN_NAMES[$first]}"
  else
    PROC_NAMES+=("$(run_name "$env" "$num_envs" "$num_steps" "$size" "${RUN_SEEDS[$first]}-${RUN_SEEDS[$last]}")")
    training_command "${RUN_SETTINGS[$first]}" "${RUN_SEEDS[$first]}" $# \
      "$(run_name "$env" "$num_envs" "$num_steps" "$size" "{seed}")"
  fi
  PROC_MEMBERS+=("$members")
  PROC_SIZES+=("$#")
  PROC_CMDS+=("$CMD")
  PROC_RESUMES+=("$([[ -f $RUNS_DIR/${RUN_NAMES[$first]}/checkpoint.pt ]] && echo 1 || echo 0)")
}

# Makes way for process $1 to start: deletes the folders of its runs that hold neither summary.json nor
# checkpoint.pt (cut short before their first checkpoint, or failed), so that they start afresh.
clear_unstarted_runs() {
  local run
  for run in ${PROC_MEMBERS[$1]}; do
    if [[ ! -f $RUNS_DIR/$run/summary.json && ! -f $RUNS_DIR/$run/checkpoint.pt ]]; then
      rm -rf -- "${RUNS_DIR:?}/$run"
    fi
  done
}

# On --dry-run, the runs skipped as completed: "#" lines, so that the output still runs as is.
dry_run_notes() {
  local run
  for run in "${RUN_NAMES[@]}"; do
    [[ ! -f $RUNS_DIR/$run/summary.json ]] || echo "# skipped, completed already with the same flags: $run"
  done
}

# The "#" line of --dry-run before process $1's command, when it resumes or deletes a folder.
process_note() {
  local run fresh=""
  if ((PROC_RESUMES[$1])); then
    echo "# resumes from its checkpoint: ${PROC_MEMBERS[$1]}"
    return 0
  fi
  for run in ${PROC_MEMBERS[$1]}; do [[ ! -e $RUNS_DIR/$run ]] || fresh+=" $run"; done
  [[ -z $fresh ]] || echo "# starts afresh, deleting the folder cut short before its first checkpoint:$fresh"
}

hms() { printf '%02d:%02d:%02d' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }

run_sweep() {
  check_recorded_flags
  plan_processes
  [[ $DRY_RUN == 1 ]] || make_runs_dir
  if [[ $LAUNCHER == slurm ]]; then
    submit_slurm_array
  else
    run_local
  fi
}

source "$HERE/sweep_local.sh"
source "$HERE/sweep_slurm.sh"
