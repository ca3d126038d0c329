"""``edge-perception run``: start a deployment from ``config/*.yaml`` without ros2 launch.

It reads the same ``launch:`` section as ``launch/*.launch.py`` (see
:mod:`edge_perception.ros.launch_common`), applies launch arguments given as ``name:=value``, and
starts every enabled node as ``python -c <call module.main()> --ros-args -r __node:=<name>
--params-file ...``, then the lifecycle manager, which configures and activates them in order::

    edge-perception run config/cpu.yaml camera_topic:=/cam/image enable_detection_node:=false

Environment of the children: the caller's, like ``ros2 launch``: its ``ROS_DOMAIN_ID`` (unset: 0)
and discovery range (``ROS_AUTOMATIC_DISCOVERY_RANGE`` / Humble's ``ROS_LOCALHOST_ONLY``; unset:
the ROS default), so RViz and other tools in the caller's set-up see the nodes; ``--domain-id``
and ``--discovery-range`` override them. A random domain and localhost-only discovery are for
the tests and the demo (test/conftest.py, scripts/test.sh, scripts/demo.sh), not for a run.

``params_file:=FILE`` (or ``--params-file FILE``) overrides node parameters (standard
``ros__parameters`` layout; see :mod:`edge_perception.ros.launch_common`), ``log_level:=debug``
sets every node's log level, ``namespace:=robot1`` puts every node under ``/robot1``;
``--write-rviz FILE`` writes the RViz layout for that namespace and camera topic, ``rviz:=true``
also starts ``rviz2`` with it (its exit leaves the nodes running).

Each child runs in its own session so a terminal's Ctrl-C reaches only the runner, which shuts
down in order: SIGINT to the lifecycle manager (it deactivates and cleans up the nodes, last
first), then SIGINT to the nodes in reverse order, escalating to SIGTERM/SIGKILL after
``--grace`` seconds. If a child dies on its own the runner stops the rest and exits non-zero,
printing the child's exit status and its last error line (an ``[ERROR]``/``[FATAL]`` log line or
a Python exception), and the last error line of every other child that logged one: a node whose
configure failed on a bad parameter, when the lifecycle manager then exits (``stop_on_failure``).
The children's output is relayed line by line (to ``--log-dir`` files, else to stdout).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Dict, List, Optional, Sequence, Tuple

import yaml

from edge_perception.ros.launch_common import (
    COMMON_ARGUMENTS,
    LaunchConfigError,
    LaunchPlan,
    find_config,
    params_file_for,
    resolve,
    rviz_config_for,
)
from edge_perception.ros.rviz import normalize_namespace

MANAGER_MODULE = "edge_perception.ros.lifecycle_manager"


def parse_overrides(items: Sequence[str]) -> Dict[str, str]:
    """``["a:=1", "b:=x"]`` -> ``{"a": "1", "b": "x"}``; raises ValueError on other forms."""
    out: Dict[str, str] = {}
    for item in items:
        if ":=" not in item:
            raise ValueError(
                "launch argument %r must be written name:=value (e.g. backend:=onnxruntime)" % item
            )
        key, value = item.split(":=", 1)
        out[key.strip()] = value
    return out


LOCALHOST_PROFILE = os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "fastdds_localhost.xml"
)
# Fast DDS 3.x reads the first; 2.x (Humble, Iron) only the second, which 3.x warns about.
_FASTDDS2_DISTROS = ("foxy", "galactic", "humble", "iron")


def apply_discovery_range(env: Dict[str, str], discovery_range: str) -> Dict[str, str]:
    """Set the discovery variables in ``env`` (in place) and return it.

    LOCALHOST also selects the project's Fast DDS profile (shared memory sized for camera frames,
    UDP on 127.0.0.1 only) unless the caller set a profile file of their own; any other range
    drops that profile, which would keep the nodes on loopback.
    """
    rng = discovery_range.upper()
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = rng
    env["ROS_LOCALHOST_ONLY"] = "1" if rng == "LOCALHOST" else "0"
    profile_vars = ["FASTDDS_DEFAULT_PROFILES_FILE"]
    if env.get("ROS_DISTRO", "") in _FASTDDS2_DISTROS:
        profile_vars.append("FASTRTPS_DEFAULT_PROFILES_FILE")
    for var in profile_vars:
        if rng == "LOCALHOST":
            env.setdefault(var, LOCALHOST_PROFILE)
        elif env.get(var) == LOCALHOST_PROFILE:
            del env[var]
    return env


def random_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..101 (ports below the Linux ephemeral range): tests and the demo."""
    return random.SystemRandom().randint(1, 101)


def discovery_range_of(env: Dict[str, str]) -> str:
    """The discovery range ``env`` asks for (``""``: not set, the ROS default)."""
    rng = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper()
    if not rng and env.get("ROS_LOCALHOST_ONLY", "").strip() == "1":
        return "LOCALHOST"
    return rng


def ros_environment(
    domain_id: Optional[int] = None,
    discovery_range: Optional[str] = None,
    base: Optional[Dict[str, str]] = None,
) -> Dict[str, str]:
    """Environment for the children: the caller's (``base``, default ``os.environ``).

    ``domain_id`` / ``discovery_range`` override the caller's ``ROS_DOMAIN_ID`` / discovery range;
    left ``None`` they are kept as the caller set them (or left unset: the ROS defaults). A
    LOCALHOST range, given or the caller's, also gets the project's loopback Fast DDS profile
    unless a profile is set (:func:`apply_discovery_range`). Raises ValueError for a domain id
    outside 0..232.
    """
    env = dict(os.environ if base is None else base)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id).strip()
    given = env.get("ROS_DOMAIN_ID", "").strip()
    if given and not (given.isdigit() and 0 <= int(given) <= 232):
        raise ValueError("ROS_DOMAIN_ID must be an integer in 0..232, got %r" % given)
    rng = discovery_range if discovery_range is not None else discovery_range_of(env)
    if rng:
        apply_discovery_range(env, rng)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def write_params_file(path: str, parameters: Dict[str, object]) -> str:
    """Write a ROS parameters file (``/**: ros__parameters: ...``) and return its path."""
    for key, value in parameters.items():
        if isinstance(value, list) and not value:
            raise ValueError(
                "parameter %r is an empty list: ROS cannot infer its type; leave it out" % key
            )
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"/**": {"ros__parameters": dict(parameters)}}, f, sort_keys=True)
    return path


# Imports the module and calls its entry function with sys.argv = [prog, --ros-args, ...], so a
# node module needs no ``if __name__ == "__main__"`` block.
_BOOT = (
    "import importlib, sys; mod, fn = sys.argv[1:3]; del sys.argv[1:3]; "
    "sys.exit(getattr(importlib.import_module(mod), fn)() or 0)"
)


def node_command(
    module: str,
    name: str,
    namespace: str,
    params_file: str,
    remappings: List[Tuple[str, str]],
    user_params_file: str = "",
    log_level: str = "",
) -> List[str]:
    """Command line of one node: ``module`` is ``package.module[:function]`` (default main).

    ``user_params_file`` follows ``params_file``: its values win (rcl applies files in order).
    """
    mod, _, func = module.partition(":")
    cmd = [sys.executable, "-c", _BOOT, mod, func or "main", "--ros-args", "-r", "__node:=" + name]
    ns = normalize_namespace(namespace)
    if ns:
        cmd += ["-r", "__ns:=" + ns]
    if log_level:
        cmd += ["--log-level", log_level]
    cmd += ["--params-file", params_file]
    if user_params_file:
        cmd += ["--params-file", user_params_file]
    for src, dst in remappings:
        cmd += ["-r", "%s:=%s" % (src, dst)]
    return cmd


class Runner:
    """Starts a :class:`LaunchPlan`'s processes and stops them in order (see the module doc)."""

    def __init__(
        self,
        plan: LaunchPlan,
        env: Dict[str, str],
        work_dir: Optional[str] = None,
        log_dir: Optional[str] = None,
        grace_s: float = 10.0,
    ) -> None:
        if not plan.enabled_nodes:
            raise LaunchConfigError(
                "%s: every node is disabled; enable one, e.g. enable_lane_node:=true"
                % plan.config_path
            )
        self.plan = plan
        self.env = env
        self.grace_s = grace_s
        self._tmp = None if work_dir else tempfile.TemporaryDirectory(prefix="ep-run-")
        self.work_dir = work_dir or self._tmp.name
        os.makedirs(self.work_dir, exist_ok=True)
        self.log_dir = log_dir
        self.procs: List[Tuple[str, subprocess.Popen]] = []
        self._logs: List[IO[bytes]] = []
        self._relays: List[threading.Thread] = []
        self.last_error: Dict[str, str] = {}  # child name -> its last error line
        self.stop_event = threading.Event()
        self.failed: List[str] = []
        #: children whose exit does not end the run (rviz2), and those already reported
        self.optional = {"rviz2"}
        self._reported: set = set()

    def commands(self) -> List[Tuple[str, List[str]]]:
        """(name, argv) of every process in start order; writes the params files."""
        out: List[Tuple[str, List[str]]] = []
        plan = self.plan
        user, level = params_file_for(plan, self.work_dir), plan.log_level
        for n in plan.enabled_nodes:
            pfile = write_params_file(os.path.join(self.work_dir, n.name + ".yaml"), n.parameters)
            cmd = node_command(n.module, n.name, plan.namespace, pfile, n.remappings, user, level)
            out.append((n.name, cmd))
        if plan.managed_names:
            params = dict(plan.manager_parameters)
            params["node_names"] = plan.managed_names
            name = "lifecycle_manager"
            pfile = write_params_file(os.path.join(self.work_dir, name + ".yaml"), params)
            cmd = node_command(
                MANAGER_MODULE, name, plan.namespace, pfile, [], user, plan.log_level
            )
            out.append((name, cmd))
        if plan.rviz:
            rviz2 = shutil.which("rviz2")
            if not rviz2:
                raise LaunchConfigError(
                    "rviz:=true but rviz2 is not on PATH; write the layout with --write-rviz FILE "
                    "and open it where RViz runs (rviz2 -d FILE)"
                )
            layout = rviz_config_for(plan, os.path.join(self.work_dir, "edge_perception.rviz"))
            out.append(("rviz2", [rviz2, "-d", layout]))
        return out

    def start(self) -> None:
        """Start every process (nodes first, the lifecycle manager last)."""
        for name, cmd in self.commands():
            sink: IO[bytes] = sys.stdout.buffer
            if self.log_dir:
                os.makedirs(self.log_dir, exist_ok=True)
                sink = open(os.path.join(self.log_dir, name + ".log"), "wb")
                self._logs.append(sink)
            proc = subprocess.Popen(
                cmd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            relay = threading.Thread(
                target=self._relay, args=(name, proc.stdout, sink), daemon=True
            )
            relay.start()
            self._relays.append(relay)
            self.procs.append((name, proc))

    def _relay(self, name: str, pipe: IO[bytes], sink: IO[bytes]) -> None:
        """Copy a child's output to ``sink`` line by line, remembering its last error line."""
        for raw in iter(pipe.readline, b""):
            try:
                sink.write(raw)
                sink.flush()
            except (OSError, ValueError):  # closed sink (shutting down): keep draining
                pass
            line = error_line(raw.decode("utf-8", "replace"))
            if line:
                self.last_error[name] = line
        pipe.close()

    def wait(self, duration_s: Optional[float] = None) -> None:
        """Block until ``stop_event`` is set, ``duration_s`` passes or a child exits."""
        end = None if duration_s is None else time.monotonic() + duration_s
        while not self.stop_event.wait(0.2):
            dead = [
                (n, p.returncode)
                for n, p in self.procs
                if p.poll() is not None and n not in self._reported
            ]
            for name, rc in [d for d in dead if d[0] in self.optional]:
                self._reported.add(name)
                print(
                    "[run] %s exited with status %s; the nodes keep running" % (name, rc),
                    file=sys.stderr,
                )
            dead = [d for d in dead if d[0] not in self.optional]
            if dead:
                self._drain(2.0)
                for name, rc in dead:
                    self.failed.append(name)
                    why = self.last_error.get(name)
                    print(
                        "[run] %s exited with status %s%s; stopping the others"
                        % (name, rc, ": " + why if why else ""),
                        file=sys.stderr,
                    )
                for name, _proc in self.procs:
                    if name not in self.failed and name in self.last_error:
                        print(
                            "[run]   %s's last error: %s" % (name, self.last_error[name]),
                            file=sys.stderr,
                        )
                return
            if end is not None and time.monotonic() >= end:
                return

    def _drain(self, timeout_s: float) -> None:
        """Let the relays of exited children reach the end of their output."""
        end = time.monotonic() + timeout_s
        for (_name, proc), relay in zip(self.procs, self._relays):
            if proc.poll() is not None:
                relay.join(max(0.0, end - time.monotonic()))

    def stop(self) -> int:
        """Stop the manager (it takes the nodes down), then the nodes last-first; exit status."""
        manager = [(n, p) for n, p in self.procs if n == "lifecycle_manager"]
        nodes = [(n, p) for n, p in self.procs if n != "lifecycle_manager"]
        for group in (manager, list(reversed(nodes))):
            for _name, proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for name, proc in group:
                _reap(proc, self.grace_s, name)
        self._drain(3.0)
        for f in self._logs:
            f.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        return 1 if self.failed else 0


_LOG_LEVEL = re.compile(r"\[(ERROR|FATAL)\]")
_ROS_STAMP = re.compile(r"^\[(ERROR|FATAL)\] \[[0-9.]+\] ")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b(:|$)")


def error_line(line: str) -> str:
    """``line`` without its time stamp when it reports an error (a ROS ``[ERROR]``/``[FATAL]``
    log line, or the last line of a Python traceback), else ``""``."""
    line = line.strip()
    if _LOG_LEVEL.search(line):
        return _ROS_STAMP.sub(r"[\1] ", line)
    if _EXCEPTION.match(line) and not line.startswith("KeyboardInterrupt"):
        return line
    return ""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the runner dies, even by SIGKILL (Linux).

    Children run in sessions of their own (so Ctrl-C reaches only the runner); without this a
    killed runner would leave its nodes running on the domain.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


def _reap(proc: subprocess.Popen, grace_s: float, name: str) -> None:
    for sig, wait_s in ((None, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if sig is not None:
            if proc.poll() is not None:
                return
            print("[run] %s did not exit; sending %s" % (name, sig.name), file=sys.stderr)
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID of the nodes (default: the caller's ROS_DOMAIN_ID; unset: 0)",
    )
    parser.add_argument(
        "--discovery-range",
        default=None,
        choices=["LOCALHOST", "SUBNET", "SYSTEM_DEFAULT"],
        help="ROS_AUTOMATIC_DISCOVERY_RANGE of the nodes (default: the caller's; unset: the ROS "
        "default, SUBNET)",
    )
    parser.add_argument(
        "--params-file",
        default=None,
        metavar="FILE",
        help="YAML in the ros__parameters layout overriding node parameters (= params_file:=FILE)",
    )
    parser.add_argument(
        "--write-rviz",
        default=None,
        metavar="FILE",
        help="write the RViz layout for this namespace and camera topic to FILE",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument("--log-dir", default=None, help="write each process's output to DIR")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds before SIGTERM")
    parser.add_argument(
        "--print", action="store_true", help="print the commands and parameters, start nothing"
    )


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception run``: ``[CONFIG] [NAME:=VALUE ...]`` and options, mixed."""
    parser.description = __doc__.split("\n\n")[0]
    parser.epilog = (
        "Launch arguments of every config: "
        + "; ".join("%s (%s)" % (k, v[1]) for k, v in COMMON_ARGUMENTS.items())
        + "; enable_<node> per node; the config's own (camera_topic, backend, ...) are listed "
        "in config/*.yaml's launch.arguments."
    )
    _add_options(parser)
    parser.add_argument(
        "config",
        nargs="?",
        default="cpu.yaml",
        help="config file or name under config/ (default cpu.yaml; xavier.yaml on the Jetson)",
    )
    # Everything after CONFIG (launch arguments and options in any order) is parsed in run().
    parser.add_argument(
        "arguments",
        nargs=argparse.REMAINDER,
        metavar="NAME:=VALUE",
        help="launch arguments, as for ros2 launch (options may follow them)",
    )
    parser.set_defaults(run=run)


def _split_rest(args: argparse.Namespace) -> None:
    """Parse the options mixed into ``args.arguments`` (argparse stops at the first positional)."""
    rest = argparse.ArgumentParser(prog="edge-perception run", add_help=False)
    _add_options(rest)
    rest.add_argument("arguments", nargs="*")
    defaults = {a.dest: a.default for a in rest._actions if a.dest != "arguments"}
    given = {k: getattr(args, k) for k in defaults if getattr(args, k) != defaults[k]}
    parsed = rest.parse_intermixed_args(list(args.arguments))
    for key, value in vars(parsed).items():
        setattr(args, key, value)
    for key, value in given.items():  # options before CONFIG keep their values
        if getattr(args, key) == defaults[key]:
            setattr(args, key, value)


def run(args: argparse.Namespace) -> int:
    """Body of ``edge-perception run`` (exit status)."""
    _split_rest(args)
    if ":=" in args.config:  # only launch arguments were given: the default config
        args.arguments, args.config = [args.config] + list(args.arguments), "cpu.yaml"
    try:
        overrides = parse_overrides(args.arguments)
        if args.params_file:
            overrides["params_file"] = args.params_file
        plan = resolve(find_config(args.config), overrides)
        env = ros_environment(args.domain_id, args.discovery_range)
        runner = Runner(plan, env, log_dir=args.log_dir, grace_s=args.grace)
        if args.write_rviz:
            rviz_config_for(plan, args.write_rviz)
            print("[run] RViz layout: rviz2 -d %s" % args.write_rviz, file=sys.stderr)
        runner.commands()  # a bad params file or a missing rviz2 stops here
    except (LaunchConfigError, ValueError, OSError) as exc:
        print("edge-perception run: %s" % exc, file=sys.stderr)
        return 2
    for n in plan.skipped_nodes:  # e.g. vis_node while no VIS model is trained
        print("[run] %s" % n.skipped, file=sys.stderr)
    if args.print:
        for name, cmd in runner.commands():
            print("%s: %s" % (name, " ".join(cmd)))
            for i, arg in enumerate(cmd[:-1]):
                if arg == "--params-file":
                    print(open(cmd[i + 1], encoding="utf-8").read())
        runner.stop()
        return 0
    print(
        "[run] %s: %s (ROS_DOMAIN_ID=%s, discovery %s%s)"
        % (
            os.path.basename(plan.config_path),
            ", ".join(n.name for n in plan.enabled_nodes),
            env.get("ROS_DOMAIN_ID") or "0 (unset)",
            discovery_range_of(env) or "SUBNET (ROS default)",
            ", namespace " + plan.fq_namespace if plan.fq_namespace else "",
        ),
        file=sys.stderr,
    )

    def _on_signal(signum, _frame) -> None:
        runner.stop_event.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        runner.start()
        runner.wait(args.duration)
    finally:
        rc = runner.stop()
        for s, h in old.items():
            signal.signal(s, h)
    return rc


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry: the same as ``edge-perception run``."""
    parser = argparse.ArgumentParser(prog="edge-perception-run")
    register(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
