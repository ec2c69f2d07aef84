"""The options table: every setting's flag, environment variable, ini key, help text and parser in one row.

One :class:`OptionSpec` per option, so that its spellings and its validation cannot drift apart; the table is grouped
by domain (core, meters, dcgm, vllm, optimum, gate, history, fleet, rules) so that a backend's or a meter's options sit
together, and :data:`OPTIONS` joins the groups in that order (the order of ``--help``).

The plugin imports this on every pytest start-up, so it imports nothing of the package but its row class: a row names
its parser (a function of :mod:`.parsers`) rather than holding it, and :mod:`.settings` looks it up when a value is
parsed.
Each module imported at start-up costs a pytest run about 0.45 M instructions: the table and its row class are the
only two.
"""

from __future__ import annotations

from pytest_aienergyscore.config.option_spec import OptionSpec

__all__ = ["CPU_SCOPES", "DEFAULT_BACKEND", "OPTIONS", "OPTIONS_BY_DEST", "OPTION_GROUPS", "OptionSpec"]

# AI Energy Score runs optimum-benchmark: the only place outside backends/ that names a backend (tests/test_layout.py)
DEFAULT_BACKEND = "optimum"

CPU_SCOPES = ("process", "machine")


# -- what to run and where results go ------------------------------------------------------------------------------
CORE_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_backend",
        "backend",
        "--backend",
        "How benchmarks generate work: optimum (optimum-benchmark's energy_star), pytorch (transformers/diffusers "
        "in this process), vllm (an OpenAI-compatible server), or the name of a backend another installed package "
        "registers under the pytest_aienergyscore.backends entry points.",
        "backend",
        default=DEFAULT_BACKEND,
        env="BENCHMARK_BACKEND",
        metavar="NAME",
        twin="--energy-backend",  # many test suites define their own --backend (issue 15)
    ),
    OptionSpec(
        "energy_output",
        "output_dir",
        "--energy-output",
        "Folder for run folders, archives and session summaries; relative paths on the command line or in the "
        "environment are taken from the current directory, in the ini file from the rootdir.",
        "text",
        default="results",
        env="AIENERGYSCORE_OUTPUT",
        metavar="DIR",
    ),
    OptionSpec(
        "energy_dataset",
        "dataset",
        "--energy-dataset",
        "Dataset for energy_star benchmarks instead of the task's official one: a local jsonl/json/csv/parquet file "
        "or a Hub dataset id.",
        "text",
        env="AIENERGYSCORE_DATASET",
        metavar="PATH",
    ),
    OptionSpec(
        "energy_samples",
        "samples",
        "--energy-samples",
        "Run each energy_star benchmark on N samples instead of the protocol's 1,000 (the per-1,000 figure is "
        "then scaled, and marked so).",
        "positive_int",
        env="AIENERGYSCORE_SAMPLES",
        metavar="N",
    ),
    OptionSpec(
        "energy_repeat",
        "repeat",
        "--energy-repeat",
        "Run the metered phases N times; reports give mean, standard deviation and coefficient of variation.",
        "positive_int",
        default=1,
        env="AIENERGYSCORE_REPEAT",
        metavar="N",
    ),
    OptionSpec(
        "energy_warmup",
        "warmup",
        "--energy-warmup",
        "Unmetered warm-up runs before the metered phases.",
        "non_negative_int",
        default=10,
        env="AIENERGYSCORE_WARMUP",
        metavar="N",
    ),
    OptionSpec(
        "energy_trust_remote_code",
        "trust_remote_code",
        "--energy-trust-remote-code",
        "Let transformers run model code shipped with a model repository (off by default).",
        "boolean",
        default=False,
        env="AIENERGYSCORE_TRUST_REMOTE_CODE",
        is_flag=True,
    ),
    OptionSpec(
        "energy_disable",
        "disabled",
        "--no-energy",
        "Turn energy metering off: tests run, nothing is metered and no energy files are written.",
        "boolean",
        default=False,
        env="AIENERGYSCORE_DISABLE",
        is_flag=True,
    ),
)

# -- which meter and what it covers --------------------------------------------------------------------------------
METERS_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_meter",
        "meter",
        "--energy-meter",
        "Energy meter: auto picks nvml when a GPU is visible, else rapl when readable, else estimate; dcgm "
        "(never picked by auto) reads remote GPUs from DCGM exporters given with --energy-dcgm-url; or the name "
        "of a meter another installed package registers under the pytest_aienergyscore.meters entry points.",
        "meter",
        default="auto",
        env="AIENERGYSCORE_METER",
        metavar="NAME",
    ),
    OptionSpec(
        "energy_gpus",
        "gpus",
        "--energy-gpus",
        "CUDA device ordinals to meter (as this process sees them after CUDA_VISIBLE_DEVICES), e.g. 0 or 0,1.",
        "gpu_list",
        default=(0,),
        env="AIENERGYSCORE_GPUS",
        metavar="IDS",
    ),
    OptionSpec(
        "energy_cpu_watts",
        "cpu_watts",
        "--energy-cpu-watts",
        "Watts one fully busy CPU core is assumed to draw, for the estimate meter.",
        "positive_float",
        default=10.0,
        env="AIENERGYSCORE_CPU_WATTS",
        metavar="W",
    ),
    OptionSpec(
        "energy_cpu_scope",
        "cpu_scope",
        "--energy-cpu-scope",
        "CPU time the estimate meter counts: process (this process and its waited-for children) or machine "
        "(every process, for work done by a local server).",
        "cpu_scope",
        default="process",
        env="AIENERGYSCORE_CPU_SCOPE",
        choices=CPU_SCOPES,
    ),
)

# -- the remote DCGM meter (issue 8) -------------------------------------------------------------------------------
DCGM_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_dcgm_urls",
        "dcgm_urls",
        "--energy-dcgm-url",
        "For --energy-meter dcgm: a dcgm-exporter URL ending in /metrics (repeat the option, one per host), or a "
        "Prometheus server URL that scrapes them; dcgm+http:// or prometheus+http:// forces the kind.",
        "url_list",
        default=(),
        env="AIENERGYSCORE_DCGM_URLS",
        metavar="URL",
        multiple=True,
    ),
    OptionSpec(
        "energy_dcgm_gpus",
        "dcgm_gpus",
        "--energy-dcgm-gpus",
        "GPUs the dcgm meter reads: comma-separated UUIDs, indices, host:index or label=value terms, or a "
        "Prometheus label selector {...} for Prometheus URLs; default every GPU the URLs publish.",
        "dcgm_gpus",
        env="AIENERGYSCORE_DCGM_GPUS",
        metavar="SELECTOR",
    ),
    OptionSpec(
        "energy_dcgm_max_age",
        "dcgm_max_age",
        "--energy-dcgm-max-age",
        "Seconds after which a DCGM counter sample, or a counter that stopped changing, is stale: windows that "
        "read one are invalid.",
        "positive_float",
        default=30.0,
        env="AIENERGYSCORE_DCGM_MAX_AGE",
        metavar="S",
    ),
)

# -- the vllm backend (issue 4) ------------------------------------------------------------------------------------
VLLM_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_vllm_endpoint",
        "vllm_endpoint",
        "--vllm-endpoint",
        "Base URL of the vLLM/OpenAI-compatible server for --backend vllm, with or without /v1.",
        "text",
        env="VLLM_ENDPOINT",
        metavar="URL",
    ),
    OptionSpec(
        "energy_concurrency",
        "concurrency",
        "--energy-concurrency",
        "Requests in flight at once for --backend vllm: 1 is the AI Energy Score protocol (one at a time); more is "
        "a production-like load, and the record then also gives its steady-state window.",
        "positive_int",
        default=1,
        env="AIENERGYSCORE_CONCURRENCY",
        metavar="N",
    ),
    OptionSpec(
        "energy_vllm_api_key_env",
        "vllm_api_key_env",
        "--vllm-api-key-env",
        "Name of the environment variable that holds the API key for --vllm-endpoint (the key itself is never "
        "taken on the command line nor written anywhere).",
        "env_name",
        default="VLLM_API_KEY",
        env="AIENERGYSCORE_VLLM_API_KEY_ENV",
        metavar="NAME",
    ),
    OptionSpec(
        "energy_vllm_timeout",
        "vllm_timeout",
        "--vllm-timeout",
        "Seconds to wait for the server's next bytes (connecting, the first token, each later piece) before a "
        "request counts as timed out and is retried; a request as a whole, retries included, is given up after 10 "
        "times this.",
        "positive_float",
        default=120.0,
        env="AIENERGYSCORE_VLLM_TIMEOUT",
        metavar="S",
    ),
    OptionSpec(
        "energy_vllm_served_model",
        "vllm_served_model",
        "--vllm-served-model",
        "Model name to request from the server when it differs from the benchmark's model id (default: the model "
        "id, or the one model the server serves).",
        "text",
        env="AIENERGYSCORE_VLLM_SERVED_MODEL",
        metavar="NAME",
    ),
)

# -- the optimum backend (issue 5) ---------------------------------------------------------------------------------
OPTIMUM_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_optimum_python",
        "optimum_python",
        "--optimum-python",
        "Python of the environment that holds optimum-benchmark for --backend optimum; default: the one "
        "`aienergyscore setup optimum` made in $XDG_CACHE_HOME/pytest-aienergyscore/optimum-env.",
        "text",
        env="AIENERGYSCORE_OPTIMUM_PYTHON",
        metavar="PATH",
    ),
)

# -- the CI gate and exports (issue 6) -----------------------------------------------------------------------------
GATE_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_save_baseline",
        "save_baseline",
        "--energy-save-baseline",
        "Save this session's figures as a baseline file for later --energy-baseline comparisons; the flag alone "
        "writes <output>/baseline.json (in the environment or ini: a path, or 1 for that default).",
        "baseline_target",
        env="AIENERGYSCORE_SAVE_BASELINE",
        metavar="PATH",
        const="1",
    ),
    OptionSpec(
        "energy_baseline",
        "baseline",
        "--energy-baseline",
        "Compare each benchmark, matched by test id, with this baseline file (written by --energy-save-baseline).",
        "text",
        env="AIENERGYSCORE_BASELINE",
        metavar="PATH",
    ),
    OptionSpec(
        "energy_fail_above",
        "fail_above",
        "--energy-fail-above",
        "Fail the session (exit 1) when a benchmark's Wh per 1,000 queries rose by more than PCT percent over the "
        "baseline; with --energy-repeat >= 3 on both sides only when the rise is also significant.",
        "positive_float",
        env="AIENERGYSCORE_FAIL_ABOVE",
        metavar="PCT",
    ),
    OptionSpec(
        "energy_quality_drop",
        "quality_drop",
        "--energy-quality-drop",
        "Fail the session (exit 1) when a benchmark's quality (its task's metric, or its own) fell by more than PCT "
        "percent against the baseline or saved run it is compared with.",
        "positive_float",
        env="AIENERGYSCORE_QUALITY_DROP",
        metavar="PCT",
    ),
    OptionSpec(
        "energy_strict",
        "strict",
        "--energy-strict",
        "Fail the session when the baseline comes from another machine fingerprint (GPU, driver, power limit, "
        "backend, meter) instead of only saying why it was not compared.",
        "boolean",
        default=False,
        env="AIENERGYSCORE_STRICT",
        is_flag=True,
    ),
    OptionSpec(
        "energy_require_baseline",
        "require_baseline",
        "--energy-require-baseline",
        "A missing baseline file, or a benchmark missing from it, is an error instead of a warning.",
        "boolean",
        default=False,
        env="AIENERGYSCORE_REQUIRE_BASELINE",
        is_flag=True,
    ),
    OptionSpec(
        "energy_json",
        "json_path",
        "--energy-json",
        "Also write the session's energy figures as pytest-benchmark-shaped JSON to PATH.",
        "text",
        env="AIENERGYSCORE_JSON",
        metavar="PATH",
    ),
    OptionSpec(
        "energy_exports",
        "exports_dir",
        "--energy-exports",
        "Also write the CI exports (summary.json, github-action-benchmark.json, bencher-bmf.json, gate.json, the HTML "
        "report) under these fixed names in DIR, so a workflow need not find the timestamped session folder.",
        "text",
        env="AIENERGYSCORE_EXPORTS",
        metavar="DIR",
    ),
)

# -- history and comparison of runs (issue 16) ---------------------------------------------------------------------
HISTORY_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_autosave",
        "autosave",
        "--energy-autosave",
        "Keep this session's figures as the next numbered run under DIR/<machine fingerprint>/ (the flag alone: "
        ".energy under the rootdir), for --energy-compare and `aienergyscore compare`.",
        "history_folder",
        env="AIENERGYSCORE_AUTOSAVE",
        metavar="DIR",
        const="1",
    ),
    OptionSpec(
        "energy_compare",
        "compare",
        "--energy-compare",
        "Compare with a saved run of this machine fingerprint: the latest (the flag alone), a run number, or a saved "
        "run's file; prints the gate's table, and --energy-fail-above fails the session on a regression.",
        "saved_run",
        env="AIENERGYSCORE_COMPARE",
        metavar="NUM",
        const="latest",
    ),
    OptionSpec(
        "energy_html",
        "html_path",
        "--energy-html",
        "Also write a self-contained HTML report (table, labels, plot, comparison, warnings, meter and hardware) to "
        "FILE.",
        "text",
        env="AIENERGYSCORE_HTML",
        metavar="FILE",
    ),
    OptionSpec(
        "energy_carbon_intensity",
        "carbon_intensity",
        "--energy-carbon-intensity",
        "Grams of CO2e per kWh of the electricity used (a number you give; nothing is looked up): adds grams of CO2e "
        "beside every energy figure, labelled with this intensity.",
        "positive_float",
        env="AIENERGYSCORE_CARBON_INTENSITY",
        metavar="G_PER_KWH",
    ),
)

# -- fleet sweeps: shards of one run over many hosts (issue 18) ------------------------------------------------------
FLEET_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_shard",
        "shard",
        "--energy-shard",
        "Run only share INDEX of COUNT (0-based) of the collected benchmarks, balanced by expected cost; INDEX auto "
        "reads JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID (Slurm). Results go to <output>/<run id>/"
        "shard-INDEX-of-COUNT/, for `aienergyscore merge`.",
        "shard",
        env="AIENERGYSCORE_SHARD",
        metavar="INDEX/COUNT",
    ),
    OptionSpec(
        "energy_run_id",
        "run_id",
        "--energy-run-id",
        "Name of the sweep every shard writes into (letters, digits, . _ -); default SLURM_ARRAY_JOB_ID under Slurm, "
        "else needed with --energy-shard.",
        "run_id",
        env="AIENERGYSCORE_RUN_ID",
        metavar="ID",
    ),
    OptionSpec(
        "energy_shard_durations",
        "shard_durations",
        "--energy-shard-durations",
        "Balance the shares by the durations of a previous run (its summary.json, a session or run folder, or a "
        "merged sweep) instead of parameters x task work; benchmarks it lacks are estimated.",
        "text",
        env="AIENERGYSCORE_SHARD_DURATIONS",
        metavar="PATH",
    ),
)

# -- AI Energy Score's rules (issue 7) -----------------------------------------------------------------------------
RULES_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_model_class",
        "model_class",
        "--energy-model-class",
        "AI Energy Score model class (A: up to 20B parameters, B: up to 66B, C: larger) instead of the one counted "
        "from the model's config or safetensors headers; needed where the count cannot be had (a vLLM endpoint).",
        "model_class",
        env="AIENERGYSCORE_MODEL_CLASS",
        metavar="CLASS",
    ),
    OptionSpec(
        "energy_allow_multi_gpu",
        "allow_multi_gpu",
        "--energy-allow-multi-gpu",
        "Benchmark a class A or B model on more than one GPU instead of refusing; the result is then marked not "
        "comparable with the leaderboard.",
        "boolean",
        default=False,
        env="AIENERGYSCORE_ALLOW_MULTI_GPU",
        is_flag=True,
    ),
)

# (group name, --help heading, rows): one argparse group per domain. pytest checks each new option of a group against
# every option already in it, so one group of all our options cost every start-up a quadratic 1.6 M instructions.
OPTION_GROUPS: tuple[tuple[str, str, tuple[OptionSpec, ...]], ...] = (
    ("aienergyscore", "energy benchmarks, AI Energy Score style (pytest-aienergyscore)", CORE_OPTIONS),
    ("aienergyscore-meters", "energy benchmarks: meters", METERS_OPTIONS),
    ("aienergyscore-dcgm", "energy benchmarks: remote GPUs through DCGM", DCGM_OPTIONS),
    ("aienergyscore-vllm", "energy benchmarks: the vllm backend", VLLM_OPTIONS),
    ("aienergyscore-optimum", "energy benchmarks: the optimum backend", OPTIMUM_OPTIONS),
    ("aienergyscore-gate", "energy benchmarks: gates in CI and exports", GATE_OPTIONS),
    ("aienergyscore-history", "energy benchmarks: history, comparison, HTML report, carbon", HISTORY_OPTIONS),
    ("aienergyscore-fleet", "energy benchmarks: fleet sweeps (shards)", FLEET_OPTIONS),
    ("aienergyscore-rules", "energy benchmarks: AI Energy Score's rules", RULES_OPTIONS),
)
OPTIONS: tuple[OptionSpec, ...] = tuple(spec for _, _, rows in OPTION_GROUPS for spec in rows)
OPTIONS_BY_DEST = {spec.dest: spec for spec in OPTIONS}
