"""One reading of ``config/*.yaml``'s ``launch:`` section for both ``ros2 launch`` and the runner.

The section lists the nodes of a deployment and the launch arguments that tune it::

    launch:
      arguments:                     # name -> default (string) or {default, description}
        camera_topic: {default: /camera/image_raw, description: input image topic}
        backend: onnxruntime
      lifecycle_manager:             # optional; parameters of the lifecycle manager node
        parameters: {stop_on_failure: true, transition_timeout_s: 60.0}
      nodes:
        - name: lane_node            # node name (``__node:=``)
          package: edge_perception   # ament package + console script, for ros2 launch
          executable: lane_node
          module: edge_perception.ros.lane_node   # module[:function], default function main
          lifecycle: true            # managed by the lifecycle manager (default true)
          enabled: true              # default of the ``enable_<name>`` launch argument
          remappings: {image: $(var camera_topic)}
          parameters: {model: models/lane_small.onnx, backend: $(var backend)}
          requires:                  # optional: files the node needs (launch args substituted)
            files: [$(var vis_model)]
            hint: how to get them    # a missing file skips the node with one line + the hint

``$(var NAME)`` (the ros2 launch spelling) inside a string is replaced by launch argument ``NAME``;
a parameter value that is exactly ``$(var NAME)`` is read as a YAML scalar (``"true"`` -> True,
``"0.5"`` -> 0.5). Every deployment has the arguments ``use_sim_time`` (given to every node),
``namespace``, ``params_file``, ``log_level``, ``rviz`` and one ``enable_<node name>`` per node:

- ``params_file``: a YAML file in the standard layout (``lane_node: {ros__parameters: {...}}``,
  ``/**`` for every node) given to every node after the config's own parameters, so its values
  win. Node names without a leading ``/`` are relative to ``namespace`` (the file is rewritten
  under it, as nav2's ``RewrittenYaml(root_key=namespace)`` does); ``/**`` and ``/ns/node`` keys
  are used as written. Checked at start: a missing file or another layout is one error line;
- ``log_level``: ``--log-level`` of every node (debug | info | warn | error | fatal);
- ``rviz``: also start ``rviz2`` with ``config/edge_perception.rviz`` rewritten for the
  namespace and camera topic (:mod:`edge_perception.ros.rviz`). A parameter string starting with
``models/`` or ``config/`` names a bundled file: it is resolved against the folder that holds
``config/`` and ``models/`` (the repository root, or ``share/edge_perception`` once installed).

:func:`resolve` is ROS-free and is what the runner and the tests use;
:func:`generate_launch_description` imports ``launch``/``launch_ros`` lazily (they exist only where
ROS 2 is installed with ros2cli, e.g. the Jetson).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

PACKAGE = "edge_perception"
BUNDLED_DIRS = ("models/", "config/")
_VAR = re.compile(r"\$\(var ([A-Za-z_][A-Za-z0-9_]*)\)")
COMMON_ARGUMENTS: Dict[str, Tuple[str, str]] = {
    "use_sim_time": ("false", "use /clock (simulation time) in every node"),
    "namespace": ("", "namespace of every node"),
    "params_file": (
        "",
        "YAML in the ros__parameters layout overriding the nodes' parameters (node names "
        "relative to namespace; /** for all)",
    ),
    "log_level": ("info", "log level of every node: debug | info | warn | error | fatal"),
    "rviz": (
        "false",
        "also start rviz2 with the RViz layout rewritten for namespace/camera_topic",
    ),
}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
PARAMS_KEY = "ros__parameters"
NODE_KEYS = (
    "name",
    "package",
    "executable",
    "module",
    "lifecycle",
    "enabled",
    "remappings",
    "parameters",
    "requires",
)


class LaunchConfigError(ValueError):
    """The ``launch:`` section is malformed; the message names the file, the key and the fix."""


@dataclass
class NodeSpec:
    """One node of a resolved deployment (launch arguments applied)."""

    name: str
    package: str
    executable: str
    module: str
    lifecycle: bool
    enabled: bool
    parameters: Dict[str, Any] = field(default_factory=dict)
    remappings: List[Tuple[str, str]] = field(default_factory=list)
    skipped: str = ""  # why a node enabled by its argument is not started (missing file)


@dataclass
class LaunchPlan:
    """Everything needed to start a deployment: nodes in order and the lifecycle manager."""

    config_path: str
    namespace: str
    arguments: Dict[str, str]
    nodes: List[NodeSpec]
    manager_parameters: Dict[str, Any]
    params_file: str = ""  # the user's params file (absolute, checked), "" for none
    log_level: str = "info"
    rviz: bool = False

    @property
    def fq_namespace(self) -> str:
        """``/ns`` (normalised, no trailing slash) or ``""``."""
        from edge_perception.ros.rviz import normalize_namespace

        return normalize_namespace(self.namespace)

    @property
    def enabled_nodes(self) -> List[NodeSpec]:
        return [n for n in self.nodes if n.enabled]

    @property
    def skipped_nodes(self) -> List[NodeSpec]:
        """Nodes enabled by their argument but not started: a file they require is missing."""
        return [n for n in self.nodes if n.skipped]

    @property
    def managed_names(self) -> List[str]:
        """Names (bring-up order) of the enabled lifecycle nodes the manager drives."""
        return [n.name for n in self.nodes if n.enabled and n.lifecycle]


def config_root(config_path: str) -> str:
    """The folder holding ``config/`` (and ``models/``): relative ``*_path`` values start here."""
    return os.path.dirname(os.path.dirname(os.path.abspath(config_path)))


def find_config(name: str) -> str:
    """Path of ``config/<name>``: an existing path as given, else the installed package share."""
    if os.path.isfile(name):
        return os.path.realpath(name)
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "..", "..", "..", "..", "config", name)]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, os.path.join(get_package_share_directory(PACKAGE), "config", name))
    except Exception:  # noqa: BLE001 - not installed with colcon: fall back to the checkout
        pass
    for c in candidates:
        if os.path.isfile(c):
            return os.path.realpath(c)  # a symlink-install copy resolves to the checkout
    raise LaunchConfigError(
        "config %r not found (looked in %s); pass a path to a config/*.yaml file"
        % (name, ", ".join(os.path.normpath(c) for c in candidates))
    )


def load_section(config_path: str) -> Dict[str, Any]:
    """The raw ``launch:`` mapping of a config file."""
    with open(config_path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    section = data.get("launch") if isinstance(data, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("nodes"), list):
        raise LaunchConfigError(
            "%s: no 'launch:' section with a 'nodes:' list; see edge_perception/ros/"
            "launch_common.py for the layout" % config_path
        )
    return section


def declared_arguments(config_path: str) -> Dict[str, Tuple[str, str]]:
    """Launch arguments of a config: name -> (default string, description)."""
    section = load_section(config_path)
    out: Dict[str, Tuple[str, str]] = dict(COMMON_ARGUMENTS)
    for name, spec in (section.get("arguments") or {}).items():
        if isinstance(spec, dict):
            out[name] = (_arg_str(spec.get("default", "")), str(spec.get("description", "")))
        else:
            out[name] = (_arg_str(spec), "")
    for node in section["nodes"]:
        name = node.get("name", "?") if isinstance(node, dict) else "?"
        enabled = node.get("enabled", True) if isinstance(node, dict) else True
        out["enable_" + str(name)] = (_arg_str(enabled), "run node %s" % name)
    return out


def resolve(config_path: str, overrides: Optional[Dict[str, str]] = None) -> LaunchPlan:
    """Apply launch arguments (``overrides``: name -> string) to a config's ``launch:`` section.

    Raises :class:`LaunchConfigError` for unknown arguments, malformed nodes or unknown keys.
    """
    config_path = os.path.realpath(config_path)
    section = load_section(config_path)
    declared = declared_arguments(config_path)
    args = {k: v[0] for k, v in declared.items()}
    for key, value in (overrides or {}).items():
        if key not in args:
            raise LaunchConfigError(
                "%s: unknown launch argument %r; known: %s"
                % (config_path, key, ", ".join(sorted(args)))
            )
        args[key] = str(value)
    root = config_root(config_path)
    use_sim_time = _as_bool(args["use_sim_time"], "use_sim_time", config_path)
    nodes: List[NodeSpec] = []
    for i, raw in enumerate(section["nodes"]):
        where = "%s: launch.nodes[%d]" % (config_path, i)
        if not isinstance(raw, dict) or not raw.get("name"):
            raise LaunchConfigError("%s: each node needs at least a 'name'" % where)
        unknown = sorted(set(raw) - set(NODE_KEYS))
        if unknown:
            raise LaunchConfigError(
                "%s: unknown key(s) %s; allowed: %s" % (where, unknown, ", ".join(NODE_KEYS))
            )
        name = str(raw["name"])
        if not raw.get("module") or not raw.get("executable"):
            raise LaunchConfigError(
                "%s (%s): needs 'module' (for the runner) and 'executable' (for ros2 launch)"
                % (where, name)
            )
        params = {
            k: _subst(v, args, where, typed=True) for k, v in (raw.get("parameters") or {}).items()
        }
        for k, v in list(params.items()):
            if _is_bundled_path(v):
                params[k] = os.path.join(root, v)
        params["use_sim_time"] = use_sim_time
        remaps = [
            (str(src), str(_subst(dst, args, where, typed=False)))
            for src, dst in (raw.get("remappings") or {}).items()
        ]
        nodes.append(
            NodeSpec(
                name=name,
                package=str(raw.get("package", PACKAGE)),
                executable=str(raw["executable"]),
                module=str(raw["module"]),
                lifecycle=bool(raw.get("lifecycle", True)),
                enabled=_as_bool(args["enable_" + name], "enable_" + name, config_path),
                parameters=params,
                remappings=remaps,
            )
        )
        _check_requires(nodes[-1], raw.get("requires"), args, root, where)
    if len({n.name for n in nodes}) != len(nodes):
        raise LaunchConfigError("%s: two nodes share a name" % config_path)
    manager = dict((section.get("lifecycle_manager") or {}).get("parameters") or {})
    manager = {k: _subst(v, args, config_path, typed=True) for k, v in manager.items()}
    manager["use_sim_time"] = use_sim_time
    level = args["log_level"].strip().lower()
    if level not in LOG_LEVELS:
        raise LaunchConfigError(
            "%s: launch argument log_level=%r; allowed: %s"
            % (config_path, args["log_level"], ", ".join(LOG_LEVELS))
        )
    params_file = find_params_file(args["params_file"], root) if args["params_file"] else ""
    return LaunchPlan(
        config_path,
        args["namespace"],
        args,
        nodes,
        manager,
        params_file=params_file,
        log_level=level,
        rviz=_as_bool(args["rviz"], "rviz", config_path),
    )


# -------------------------------------------------------------------------------- params_file
def find_params_file(path: str, root: str = "") -> str:
    """Absolute path of a user's params file (as given, else under ``root``), layout checked.

    Raises :class:`LaunchConfigError` naming the file and what is wrong with it.
    """
    given = os.path.expanduser(path.strip())
    candidates = [os.path.abspath(given)]
    if root and not os.path.isabs(given):
        candidates.append(os.path.join(root, given))
    found = next((c for c in candidates if os.path.isfile(c)), "")
    if not found:
        raise LaunchConfigError(
            "params_file %r: no such file (looked at %s)" % (path, ", ".join(candidates))
        )
    load_params_file(found)
    return found


def load_params_file(path: str) -> Dict[str, Any]:
    """The mapping of a params file, checked for the ``<node>: ros__parameters:`` layout."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " (line %d)" % (mark.line + 1) if mark is not None else ""
        raise LaunchConfigError("params_file %s: not valid YAML%s" % (path, where)) from None
    except OSError as exc:
        raise LaunchConfigError("params_file %s: %s" % (path, exc.strerror)) from None
    example = "e.g. lane_node: {ros__parameters: {threads: 2}} or /**: {ros__parameters: ...}"
    if not isinstance(data, dict) or not data:
        raise LaunchConfigError(
            "params_file %s: expected node names at the top level (%s)" % (path, example)
        )
    found = [0]

    def walk(mapping: Dict[str, Any], where: str) -> None:
        for key, value in mapping.items():
            here = "%s/%s" % (where, key) if where else str(key)
            if key == PARAMS_KEY:
                if not isinstance(value, dict):
                    raise LaunchConfigError(
                        "params_file %s: %s must map parameter names to values" % (path, here)
                    )
                found[0] += 1
            elif isinstance(value, dict):
                walk(value, here)
            else:
                raise LaunchConfigError(
                    "params_file %s: %r is not a node (no %s: under it; %s)"
                    % (path, here, PARAMS_KEY, example)
                )

    walk(data, "")
    if not found[0]:
        raise LaunchConfigError("params_file %s: no %s section (%s)" % (path, PARAMS_KEY, example))
    return data


def params_file_for(plan: LaunchPlan, out_dir: str) -> str:
    """The params file to give the nodes: the user's as it is without a namespace, else a copy
    in ``out_dir`` whose relative node names are moved under the namespace; ``""`` for none."""
    if not plan.params_file:
        return ""
    ns = plan.fq_namespace
    if not ns:
        return plan.params_file
    data = load_params_file(plan.params_file)
    moved = {(k if str(k).startswith("/") else "%s/%s" % (ns, k)): v for k, v in data.items()}
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "params_file%s.yaml" % ns.replace("/", "_"))
    with open(out, "w", encoding="utf-8") as f:
        f.write(
            "# %s with node names under %s (edge_perception launch)\n" % (plan.params_file, ns)
        )
        yaml.safe_dump(moved, f, sort_keys=False)
    return out


def rviz_config_for(plan: LaunchPlan, out_path: str) -> str:
    """Write the shipped RViz layout rewritten for ``plan`` (namespace, camera_topic; displays
    of nodes it does not start left out)."""
    from edge_perception.ros import rviz

    started = [n.name for n in plan.enabled_nodes] + ["lifecycle_manager"]
    return rviz.write(
        out_path,
        find_config(rviz.RVIZ_CONFIG),
        plan.fq_namespace,
        started,
        plan.arguments.get("camera_topic") or None,
        not_started=[n.name for n in plan.nodes if not n.enabled],
    )


def _is_bundled_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(BUNDLED_DIRS)


def _check_requires(spec: NodeSpec, req: Any, args: Dict[str, str], root: str, where: str) -> None:
    """``requires: {files: [...], hint: ...}`` of an enabled node: when a file is missing the node
    is not started (``enabled`` False) and ``skipped`` says why, with the hint."""
    if not req or not spec.enabled:
        return
    files = req.get("files") if isinstance(req, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise LaunchConfigError(
            "%s (%s): 'requires' needs 'files: [path, ...]' (and optionally 'hint: text')"
            % (where, spec.name)
        )
    missing = []
    for f in files:
        path = _subst(f, args, where, typed=False)
        full = os.path.join(root, path) if _is_bundled_path(path) else os.path.abspath(path)
        if not os.path.isfile(full):
            missing.append(path)
    if missing:
        hint = _subst(str(req.get("hint", "")), args, where, typed=False)
        spec.enabled = False
        spec.skipped = "%s not started: %s not found%s" % (
            spec.name, ", ".join(missing), "; " + hint if hint else ""
        )  # fmt: skip


def _arg_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_bool(text: str, name: str, where: str) -> bool:
    # The spellings launch's IfCondition accepts, so both front ends agree.
    low = str(text).strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise LaunchConfigError(
        "%s: launch argument %s=%r is not true/false (or 1/0)" % (where, name, text)
    )


def _subst(value: Any, args: Dict[str, str], where: str, typed: bool) -> Any:
    if isinstance(value, list):
        return [_subst(v, args, where, typed) for v in value]
    if not isinstance(value, str):
        return value

    def _arg(m: Any) -> str:
        name = m.group(1)
        if name not in args:
            raise LaunchConfigError(
                "%s: $(var %s) names no launch argument; declare it under launch.arguments"
                % (where, name)
            )
        return args[name]

    whole = _VAR.fullmatch(value.strip())
    text = _VAR.sub(_arg, value)
    if "$(" in text:
        raise LaunchConfigError("%s: %r: only $(var NAME) is substituted" % (where, value))
    if whole is None or not typed:
        return text
    parsed = yaml.safe_load(text) if text.strip() else ""
    return parsed if isinstance(parsed, (bool, int, float, str)) else text


# ---------------------------------------------------------------------------------- ros2 launch
def generate_launch_description(config_name: str):
    """``LaunchDescription`` for ``config/<config_name>``: arguments, nodes, lifecycle manager.

    Every node is a ``launch_ros.actions.LifecycleNode`` (or ``Node`` when ``lifecycle: false``)
    with ``condition=IfCondition(enable_<name>)``; the nodes' parameters and the manager's
    ``node_names`` are computed from the evaluated launch arguments by :func:`resolve`. Every
    node gets ``--log-level <log_level>`` and, after its own parameters, the ``params_file``
    (rewritten under the namespace, :func:`params_file_for`); ``rviz:=true`` adds ``rviz2``
    with the layout rewritten for the namespace (:func:`rviz_config_for`).

    When the lifecycle manager exits (status 1: bring-up failed with ``stop_on_failure``), an
    ``OnProcessExit`` handler shuts the whole launch down (:func:`manager_exit_handler`), so a
    failed bring-up ends ``ros2 launch`` instead of leaving unconfigured nodes running.
    """
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    from launch import LaunchDescription

    config_path = find_config(config_name)

    def _nodes(context, *_args, **_kwargs):
        overrides = {
            k: LaunchConfiguration(k).perform(context) for k in declared_arguments(config_path)
        }
        plan = resolve(config_path, overrides)
        out_dir = tempfile.mkdtemp(prefix="edge_perception_launch_")
        user_params = params_file_for(plan, out_dir)
        ros_args = ["--ros-args", "--log-level", plan.log_level]
        actions = []
        for n in plan.nodes:
            if n.skipped:  # a required file (e.g. a model not trained yet) is missing
                actions += _log_action("[edge_perception] " + n.skipped)
                continue
            cls = LifecycleNode if n.lifecycle else Node
            actions.append(
                cls(
                    package=n.package,
                    executable=n.executable,
                    name=n.name,
                    namespace=plan.namespace,
                    parameters=[n.parameters] + ([user_params] if user_params else []),
                    remappings=n.remappings,
                    arguments=list(ros_args),
                    output="screen",
                    condition=IfCondition(LaunchConfiguration("enable_" + n.name)),
                )
            )
        if plan.managed_names:
            params = dict(plan.manager_parameters)
            params["node_names"] = plan.managed_names
            manager = Node(
                package=PACKAGE,
                executable="lifecycle_manager",
                name="lifecycle_manager",
                namespace=plan.namespace,
                parameters=[params] + ([user_params] if user_params else []),
                arguments=list(ros_args),
                output="screen",
            )
            actions += [manager, manager_exit_handler(manager)]
        if plan.rviz:
            layout = rviz_config_for(plan, os.path.join(out_dir, "edge_perception.rviz"))
            actions.append(
                Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", layout])
            )
        return actions

    declared = [
        DeclareLaunchArgument(name, default_value=default, description=desc)
        for name, (default, desc) in declared_arguments(config_path).items()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])


def _log_action(text: str) -> List[Any]:
    """``[LogInfo(text)]`` (ros2 launch prints it with the launch's log), or the line printed to
    stderr at once where this ``launch`` has no LogInfo."""
    try:
        from launch.actions import LogInfo
    except ImportError:
        import sys

        print(text, file=sys.stderr)
        return []
    return [LogInfo(msg=text)]


def manager_exit_handler(manager: Any) -> Any:
    """``RegisterEventHandler(OnProcessExit(manager -> Shutdown))``: the launch ends with the
    lifecycle manager, whose non-zero status (failed bring-up) is given as the reason."""
    from launch.actions import RegisterEventHandler, Shutdown
    from launch.event_handlers import OnProcessExit

    def _on_exit(event: Any, _context: Any) -> List[Any]:
        code = getattr(event, "returncode", None)
        return [
            Shutdown(
                reason="lifecycle_manager exited with status %s%s"
                % (code, " (bring-up failed)" if code else "")
            )
        ]

    return RegisterEventHandler(OnProcessExit(target_action=manager, on_exit=_on_exit))
